"""The simulated workspace: teams, agents, channels, categories, topics, closing notes, bad-record kinds."""

from __future__ import annotations


FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")

# --------------------------------------------------------------------------------------------
# The workspace: reference data shared by the generator and write_reference().
# --------------------------------------------------------------------------------------------

# team_id, name
TEAMS: tuple[tuple[str, str], ...] = (
    ("t_support", "Customer Support"),
    ("t_tech", "Technical Support"),
    ("t_sales", "Sales"),
)

# user_id, name, email, team_id, role
AGENTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("u_amara", "Amara Okafor", "amara.okafor@example.com", "t_support", "manager"),
    ("u_lucas", "Lucas Martin", "lucas.martin@example.com", "t_support", "agent"),
    ("u_mei", "Mei Tanaka", "mei.tanaka@example.com", "t_support", "agent"),
    ("u_sofia", "Sofía Hernández", "sofia.hernandez@example.com", "t_support", "agent"),
    ("u_daniel", "Daniel Weber", "daniel.weber@example.com", "t_tech", "manager"),
    ("u_priya", "Priya Sharma", "priya.sharma@example.com", "t_tech", "agent"),
    ("u_tomasz", "Tomasz Nowak", "tomasz.nowak@example.com", "t_tech", "agent"),
    ("u_chloe", "Chloé Dubois", "chloe.dubois@example.com", "t_tech", "agent"),
    ("u_nam", "Nguyen Van Nam", "nam.nguyen@example.com", "t_sales", "manager"),
    ("u_isabela", "Isabela Costa", "isabela.costa@example.com", "t_sales", "agent"),
    ("u_omar", "Omar Haddad", "omar.haddad@example.com", "t_sales", "agent"),
    ("u_hannah", "Hannah Kim", "hannah.kim@example.com", "t_sales", "agent"),
)

# channel_id, share of contacts
CHANNELS: tuple[tuple[str, float], ...] = (
    ("ch_whatsapp_01", 0.45),
    ("ch_messenger_01", 0.20),
    ("ch_instagram_01", 0.15),
    ("ch_webchat_01", 0.20),
)

# The configured closing-note categories (categories.csv): name, description.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Billing", "Invoices, payments, refunds and plan changes"),
    ("Technical", "Bugs, errors, integrations and how-to questions"),
    ("Shipping", "Delivery status, delays, lost or damaged parcels"),
    ("Account", "Login, password, profile and personal-data requests"),
    ("Sales", "Pricing, quotes, demos and upgrades"),
    ("Other", "Anything that fits no other category"),
)
# A legacy category that some agents still pick; it is *not* in categories.csv, so the
# pipeline keeps those closes and flags them (spec §3).
UNLISTED_CATEGORY = "Returns"

# Topic of a conversation: the category it is about, the team that handles it, its share.
_TOPICS: tuple[tuple[str, str, float], ...] = (
    ("Billing", "t_support", 0.22),
    ("Technical", "t_tech", 0.22),
    ("Shipping", "t_support", 0.18),
    ("Account", "t_tech", 0.13),
    ("Sales", "t_sales", 0.15),
    ("Other", "t_support", 0.10),
)

# Closing-note summaries by category. "{n}" becomes a number. Some contain quotes, a
# backslash, commas, non-ASCII text and a newline on purpose (escaping in JSON and CSV).
_SUMMARIES: dict[str, tuple[str, ...]] = {
    "Billing": (
        "Refund issued for invoice #{n}",
        "Charged twice; duplicate charge of {n} cents reversed",
        'Explained proration of the "Pro" plan',
        "Updated card on file, payment retried",
        "Invoice resent to the billing contact (café account)",
    ),
    "Technical": (
        "Webhook reset; integration works again",
        'Error "401 Unauthorized" on the API key: key regenerated',
        "Export to C:\\Users\\shared fails: sent workaround",
        "App crash on Android 14, escalated to dev (ticket #{n})",
        "Walked the customer through setup\nand tested it together",
    ),
    "Shipping": (
        "Parcel #{n} held at customs, ETA shared",
        "Wrong address; courier rerouted",
        "Damaged item, replacement sent 📦",
        "Tracking link resent",
    ),
    "Account": (
        "Password reset link sent",
        "Account deletion request (GDPR) completed",
        "E-mail address changed after identity check",
        "2FA disabled, customer re-enrolled",
    ),
    "Sales": (
        "Sent quote #{n} for 25 seats",
        "Demo booked for next Tuesday",
        'Asked "do you offer NGO discounts?": yes, 20%',
        "Upgraded to the annual plan",
    ),
    "Other": (
        "Customer said thanks",
        "Spam, no action",
        "Wrong number",
        "Feedback forwarded to the product team, merci!",
    ),
    UNLISTED_CATEGORY: ("Return label sent for order #{n}",),
}

BAD_KINDS: tuple[str, ...] = (
    "not_json",
    "missing_contact_id",
    "naive_timestamp",
    "unknown_event_type",
    "exact_duplicate",
    "conflicting_duplicate",
    "orphan_close",
)
_UNKNOWN_EVENT_TYPES = ("conversation.snoozed", "message.deleted", "contact.tag.added", "conversation.transferred")
