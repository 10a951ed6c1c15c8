"""'Did you mean' hints for words of the workflow vocabulary."""

from __future__ import annotations

import difflib

# Words people write for the real ones (from other tools, or plain English).
SYNONYMS = {
    "equals": "is_equal_to", "equal": "is_equal_to", "eq": "is_equal_to", "==": "is_equal_to", "=": "is_equal_to",
    "is": "is_equal_to", "not_equals": "is_not_equal_to", "ne": "is_not_equal_to", "!=": "is_not_equal_to",
    "is_not": "is_not_equal_to", "in": "is_one_of", "one_of": "is_one_of", "not_in": "is_not_one_of",
    "has": "contains", "includes": "contains", "not_contains": "does_not_contain", "exists": "is_present",
    "present": "is_present", "is_set": "is_present", "missing": "is_not_present", "is_empty": "is_not_present",
    "not_present": "is_not_present", "and": "all", "or": "any", "every": "all", "assignee": "assignee_id",
    "user": "user_id", "team": "team_id", "channel": "channel_id", "agent": "user",
}


def did_you_mean(word, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    choices = list(choices)
    norm = str(word).strip().lower().replace(" ", "_").replace("-", "_")
    if SYNONYMS.get(norm) in choices:
        return f" (did you mean '{SYNONYMS[norm]}'?)"
    for c in choices:
        if c.lower() == norm or c.lower().replace(".", "_") == norm:
            return f" (did you mean '{c}'?)"
    close = difflib.get_close_matches(norm, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
