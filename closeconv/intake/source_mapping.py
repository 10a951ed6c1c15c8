"""A declared mapping (YAML) turns a CSV or JSON-lines export into contract event files.

`closeconv intake map --config MAPPING.yaml IN... --out DIR`. The mapping says which column
gives each contract field, how values translate (event types, sources), which timezone naive
timestamps are in (stated, never guessed), which rows to skip, and how to derive an event_id
when the export has none. Every input row ends up in exactly one place: the output file, or
the rejects file with its line, raw record and reason (skipped rows included, marked so).

The conversion is one SQL statement per input over the rows as staged by the pipeline's own
readers (`closeconv.ingest`), so CSV quirks are handled once and no row is touched in Python.
See docs/intake-sources.md for the format and a mapping for each public log tried.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML, YAMLError

from closeconv.config import ConfigError
from closeconv.contract import EVENT_FIELDS
# The pipeline's own readers stage the rows (one CSV/JSON-lines reader in the project).
from closeconv.ingest import _STAGERS, LandingFile, RecordTable, detect_format

MAPPED_FIELDS = tuple(f for f in EVENT_FIELDS)
REQUIRED_MAPPED = ("event_type", "occurred_at", "contact_id")
# strftime/strptime directives that give a timestamp its zone
_ZONE_DIRECTIVES = ("%z", "%Z")
_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
_OFFSET = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"


class FieldRule(BaseModel):
    """Where one contract field comes from, for the rows that match `when`."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(None, description="a CSV column or a top-level JSON key")
    columns: list[str] | None = Field(None, description="several columns joined by `separator` (a composite key)")
    separator: str = ":"
    value: str | None = Field(None, description="a constant")
    pattern: str | None = Field(None, description="a regular expression (RE2); its first group is the value")
    values: dict[str, str] | None = Field(None, description="value map: source value → contract value")
    when: dict[str, Union[str, list[str]]] | None = Field(None, description="only rows whose columns hold these values")

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, v):
        # YAML reads True/False/1 as booleans and numbers; a value map matches the text.
        return {_text(k): _text(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("when", mode="before")
    @classmethod
    def _when_as_text(cls, v):
        if not isinstance(v, dict):
            return v
        return {k: [_text(x) for x in x_] if isinstance(x_, list) else _text(x_) for k, x_ in v.items()}

    @field_validator("value", mode="before")
    @classmethod
    def _value_as_text(cls, v):
        return _text(v)

    @model_validator(mode="after")
    def _one_origin(self):
        given = [n for n in ("column", "columns", "value") if getattr(self, n) not in (None, [])]
        if len(given) != 1:
            raise ValueError("give exactly one of column, columns or value")
        return self

    def referenced_columns(self) -> list[str]:
        cols = [self.column] if self.column else list(self.columns or [])
        return cols + list(self.when or {})


class Timestamps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str | None = Field(None, description="strptime format (DuckDB); omitted: ISO-8601 or epoch numbers")
    timezone: str | None = Field(None, description="IANA zone of timestamps that carry no offset")
    epoch: Literal["seconds", "milliseconds"] = "milliseconds"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v):
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {v!r}; use an IANA name such as 'Europe/Rome' or 'UTC'") from None
        return v

    @model_validator(mode="after")
    def _naive_format_needs_zone(self):
        if self.format and not any(d in self.format for d in _ZONE_DIRECTIVES) and not self.timezone:
            raise ValueError(
                f"format {self.format!r} reads timestamps without a UTC offset, and no timezone is set; "
                "add `timezone: <IANA name>` (the zone the export was written in) under timestamps: "
                "closeconv never guesses it"
            )
        return self


def _text(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    return v if v is None or isinstance(v, str) else str(v)


class SourceMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    # Each field: a column name, one rule, or a list of rules tried by their `when` in order.
    fields: dict[str, list[FieldRule]]
    timestamps: Timestamps = Timestamps()
    skip: dict[str, list[str]] = Field(default_factory=dict, description="rows to leave out: column → values")
    event_id_prefix: str = Field("row:", description="prefix of derived event ids (when fields.event_id is absent)")

    @model_validator(mode="before")
    @classmethod
    def _rules_as_lists(cls, data):
        if isinstance(data, dict) and isinstance(data.get("fields"), dict):
            data = {**data, "fields": {
                k: [{"column": v}] if isinstance(v, str) else v if isinstance(v, list) else [v]
                for k, v in data["fields"].items()
            }}
        return data

    @field_validator("skip", mode="before")
    @classmethod
    def _skip_as_text(cls, v):
        return {k: [_text(x) for x in (xs if isinstance(xs, list) else [xs])] for k, xs in v.items()} if isinstance(v, dict) else v

    @field_validator("fields")
    @classmethod
    def _contract_fields(cls, v: dict):
        unknown = [k for k in v if k not in MAPPED_FIELDS]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} is not a contract field; the fields are {', '.join(MAPPED_FIELDS)}")
        missing = [k for k in REQUIRED_MAPPED if k not in v]
        if missing:
            raise ValueError(f"the mapping must say where {', '.join(missing)} comes from")
        return v

    def rules(self, name: str) -> list[FieldRule]:
        return self.fields[name]

    def referenced_columns(self) -> list[str]:
        cols: list[str] = []
        for name in self.fields:
            for rule in self.rules(name):
                cols += rule.referenced_columns()
        cols += list(self.skip)
        return list(dict.fromkeys(cols))


def load_mapping(path: Path) -> SourceMapping:
    """Read and check MAPPING.yaml. Raises ConfigError naming the file, the setting and the fix."""
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"mapping file {str(path)!r} does not exist; pass --config with the path of a mapping YAML") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a mapping is a YAML object with `fields:` (see docs/intake-sources.md)")
    try:
        mapping = SourceMapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    con = duckdb.connect()
    try:
        for name in mapping.fields:
            for rule in mapping.rules(name):
                if rule.pattern is None:
                    continue
                try:
                    con.sql("SELECT regexp_extract('', ?, 1)", params=[rule.pattern]).fetchall()
                except duckdb.Error as exc:
                    raise ConfigError(f"{path}: fields.{name}.pattern {rule.pattern!r} is not a valid regular expression "
                                      f"with a group: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    return mapping


@dataclass
class MapResult:
    input: Path
    output: Path
    rejects: Path
    rows: int = 0
    converted: int = 0
    skipped: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(column: str) -> str:
    """A column name as a quoted JSON path literal: any header text is safe."""
    return _lit('$."' + column.replace('"', '\\"') + '"')


# Rows the readers could not make into a JSON object: (reason_code, reason) by their shape.
_UNREADABLE_CODE = ("CASE WHEN NOT is_json_text OR raw IS NULL THEN 'malformed_row' "
                    "WHEN json_valid(raw) THEN 'not_an_object' ELSE 'invalid_json' END")
_UNREADABLE_REASON = ("CASE WHEN NOT is_json_text OR raw IS NULL THEN 'CSV row has a different number of fields than the header' "
                      "WHEN json_valid(raw) THEN 'line is JSON but not an object' ELSE 'line is not valid JSON' END")


class _Sql:
    """SQL expressions for one mapping over a relation with `cols` (a list of column values)."""

    def __init__(self, mapping: SourceMapping, config_path: Path):
        self.m = mapping
        self.where = str(config_path)
        self.columns = mapping.referenced_columns()

    def col(self, name: str) -> str:
        return f"cols[{self.columns.index(name) + 1}]"

    def cond(self, when: dict | None) -> str:
        if not when:
            return "true"
        parts = []
        for column, wanted in when.items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            parts.append(f"coalesce({self.col(column)} IN ({', '.join(_lit(w) for w in wanted)}), false)")
        return " AND ".join(parts)

    def base(self, rule: FieldRule) -> str:
        if rule.value is not None:
            return _lit(rule.value)
        if rule.column:
            raw = self.col(rule.column)
        else:
            parts = [self.col(c) for c in rule.columns]
            raw = f"CASE WHEN {' AND '.join(f'{p} IS NOT NULL' for p in parts)} THEN concat_ws({_lit(rule.separator)}, {', '.join(parts)}) END"
        if rule.pattern:
            raw = f"nullif(regexp_extract({raw}, {_lit(rule.pattern)}, 1), '')"
        return raw

    def origin(self, name: str, rule: FieldRule) -> str:
        if rule.column:
            return f"column {rule.column!r}"
        if rule.columns:
            return f"columns {', '.join(repr(c) for c in rule.columns)}"
        return "the constant"

    def mapped(self, rule: FieldRule) -> str:
        base = self.base(rule)
        if not rule.values:
            return base
        cases = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in rule.values.items())
        return f"CASE {base} {cases} END"

    def field_value(self, name: str) -> str:
        # CASE takes the first rule whose `when` holds: the order of `applies`.
        cases = " ".join(f"WHEN {self.cond(r.when)} THEN {self.mapped(r)}" for r in self.m.rules(name))
        return f"CASE {cases} END"

    def applies(self, name: str) -> list[str]:
        """Per rule of the field: the condition under which that rule is the one used."""
        conds, earlier = [], []
        for r in self.m.rules(name):
            c = self.cond(r.when)
            conds.append(" AND ".join([c, *(f"NOT ({e})" for e in earlier)]))
            earlier.append(c)
        return conds

    def field_problem(self, name: str, column: str) -> tuple[str, str]:
        """(reason_code, message) expressions for this field on one row (NULL when fine).

        `column` is the field's value as already computed in the row, so no rule is evaluated twice."""
        codes, messages = [], []
        for r, applies in zip(self.m.rules(name), self.applies(name)):
            src = self.origin(name, r)
            raw = self.col(r.column) if r.column else None
            if r.pattern and raw:
                bad = f"{applies} AND {raw} IS NOT NULL AND {self.base(r)} IS NULL"
                codes.append(f"WHEN {bad} THEN 'pattern_no_match'")
                messages.append(
                    f"WHEN {bad} THEN {_lit(f'{name}: {src} value ')} || {_lit(chr(39))} || left({raw}, 80) || "
                    f"{_lit(chr(39) + ' does not match fields.' + name + '.pattern ' + r.pattern)}"
                )
            if r.values:
                bad = f"{applies} AND {self.base(r)} IS NOT NULL AND {column} IS NULL"
                codes.append(f"WHEN {bad} THEN 'unmapped_value'")
                messages.append(
                    f"WHEN {bad} THEN {_lit(f'{name}: {src} value ')} || {_lit(chr(39))} || {self.base(r)} || "
                    f"{_lit(chr(39) + f' has no entry in fields.{name}.values; add it there, or list it under skip: in {self.where}')}"
                )
        if name in REQUIRED_MAPPED or name == "event_id":
            desc = " / ".join(self.origin(name, r) for r in self.m.rules(name))
            codes.append(f"WHEN {column} IS NULL THEN 'missing_value'")
            messages.append(f"WHEN {column} IS NULL THEN {_lit(f'{name} is empty (from {desc}); every row needs one')}")
        if not codes:
            return "NULL", "NULL"
        return f"CASE {' '.join(codes)} END", f"CASE {' '.join(messages)} END"

    def timestamp(self) -> tuple[str, str, str]:
        """(TIMESTAMPTZ expression, reason_code expression, message expression) over column `ts_text`."""
        t = self.m.timestamps
        v = "trim(ts_text)"
        zone = t.timezone
        if t.format:
            parsed = f"try_strptime({v}, {_lit(t.format)})"
            if not any(d in t.format for d in _ZONE_DIRECTIVES):
                parsed = f"timezone({_lit(zone)}, {parsed})"
            bad = f"'occurred_at value ''' || {v} || ''' does not match timestamps.format {t.format.replace(chr(39), chr(39) * 2)}'"
            return parsed, "CASE WHEN ts IS NULL AND ts_text IS NOT NULL THEN 'invalid_timestamp' END", \
                f"CASE WHEN ts IS NULL AND ts_text IS NOT NULL THEN {bad} END"
        number = f"try_cast({v} AS BIGINT)"
        micros = f"{number} * 1000000" if t.epoch == "seconds" else f"{number} * 1000"
        naive = f"timezone({_lit(zone)}, try_cast({v} AS TIMESTAMP))" if zone else "NULL"
        parsed = f"""CASE
            WHEN {number} IS NOT NULL THEN make_timestamptz({micros})
            WHEN regexp_matches({v}, {_lit(_ISO + _OFFSET)}) THEN try_cast(upper({v}) AS TIMESTAMPTZ)
            WHEN regexp_matches({v}, {_lit(_ISO + '$')}) THEN {naive} END"""
        naive_msg = (
            f"'occurred_at ''' || {v} || ''' has no UTC offset and the mapping sets no timestamps.timezone; "
            f"add `timezone: <IANA name>` under timestamps: in {self.where.replace(chr(39), chr(39) * 2)} (it is never guessed)'"
        )
        code = f"""CASE WHEN ts_text IS NULL OR ts IS NOT NULL THEN NULL
            WHEN regexp_matches({v}, {_lit(_ISO + '$')}) AND {_lit(zone or '')} = '' THEN 'naive_timestamp'
            ELSE 'invalid_timestamp' END"""
        message = f"""CASE WHEN ts_text IS NULL OR ts IS NOT NULL THEN NULL
            WHEN regexp_matches({v}, {_lit(_ISO + '$')}) AND {_lit(zone or '')} = '' THEN {naive_msg}
            ELSE 'occurred_at value ''' || {v} || ''' is neither ISO-8601 nor an epoch number; set timestamps.format' END"""
        return parsed, code, message


def _output_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".jsonl", ".ndjson"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _publish(tmp: Path, final: Path) -> None:
    """fsync the finished file and rename it into place, so no reader sees half of it."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def plan_outputs(inputs: list[Path], out_dir: Path, rejects_dir: Path) -> list[tuple[Path, Path, Path]]:
    """(input, output file, rejects file) per input; ConfigError for an unreadable or clashing input."""
    plans, seen = [], {}
    for path in inputs:
        if not path.is_file():
            raise ConfigError(f"input {str(path)!r} does not exist or is not a file")
        fmt = detect_format(path)
        if fmt not in ("csv", "jsonl"):
            raise ConfigError(f"input {str(path)!r}: map reads .csv and .jsonl/.ndjson files (optionally .gz)")
        stem = _output_name(path)
        if stem in seen:
            raise ConfigError(f"inputs {str(seen[stem])!r} and {str(path)!r} would both write {stem}.jsonl; rename one")
        seen[stem] = path
        plans.append((path, out_dir / f"{stem}.jsonl", rejects_dir / f"{stem}.rejects.jsonl"))
    return plans


def convert_file(mapping: SourceMapping, config_path: Path, path: Path, output: Path, rejects: Path) -> MapResult:
    """Convert one export; write `output` (contract JSON lines) and `rejects` (with reasons)."""
    fmt = detect_format(path)
    con = duckdb.connect()
    try:
        con.sql("SET TimeZone = 'UTC'")
        con.sql("CREATE TABLE raw_records (file VARCHAR, line BIGINT, raw VARCHAR, is_json_text BOOLEAN)")
        st = path.stat()
        _STAGERS[fmt](LandingFile(path, path.name, fmt, f"{st.st_size}:{st.st_mtime_ns}"), RecordTable(con, path.name))
        return _convert(con, mapping, config_path, path, output, rejects)
    finally:
        con.close()


def _convert(con, mapping: SourceMapping, config_path: Path, path: Path, output: Path, rejects: Path) -> MapResult:
    sql = _Sql(mapping, config_path)
    paths = ", ".join(_json_path(c) for c in sql.columns)
    con.sql(
        f"""
        CREATE TEMP TABLE rows AS
        SELECT line, raw, is_json_text, is_json_text AND json_valid(raw) AND left(ltrim(raw), 1) = '{{' AS is_object,
            CASE WHEN is_json_text AND json_valid(raw) AND left(ltrim(raw), 1) = '{{'
                 THEN list_transform(json_extract_string(raw, [{paths}]), lambda x: nullif(trim(x), '')) END AS cols
        FROM raw_records
        """
    )
    # A column the mapping names but no row has is a mistake in the mapping, not in the rows.
    present = con.sql(
        "SELECT " + ", ".join(f"count({sql.col(c)}) > 0 OR bool_or(json_exists(raw, {_json_path(c)}))"
                              for c in sql.columns) + " FROM rows WHERE is_object"
    ).fetchall()[0]
    missing = [c for c, ok in zip(sql.columns, present) if not ok]
    if missing and con.sql("SELECT count(*) FROM rows WHERE is_object").fetchall()[0][0]:
        raise ConfigError(
            f"{config_path}: column(s) {', '.join(repr(c) for c in missing)} named by the mapping are in no row of {path}; "
            "fix the column name (it is case-sensitive)"
        )
    skip = " OR ".join(f"coalesce({sql.col(c)} IN ({', '.join(_lit(v) for v in vs)}), false)" for c, vs in mapping.skip.items()) or "false"
    skip_msg = " || ".join(
        f"CASE WHEN coalesce({sql.col(c)} IN ({', '.join(_lit(v) for v in vs)}), false) THEN {_lit(f'skipped by the mapping: {c} is ')} || {_lit(chr(39))} || {sql.col(c)} || {_lit(chr(39))} ELSE '' END"
        for c, vs in mapping.skip.items()
    ) or "''"
    names = [n for n in MAPPED_FIELDS if n in mapping.fields or n == "event_id"]
    values = []
    problems = []
    for n in names:
        if n == "event_id" and "event_id" not in mapping.fields:
            # Derived from the row's content, not its position: a re-export keeps its ids, and a
            # repeated identical row becomes an exact duplicate the pipeline drops and counts.
            values.append(f"{_lit(mapping.event_id_prefix)} || left(sha256(raw), 32) AS event_id")
            continue
        if n == "occurred_at":
            values.append(f"{sql.field_value(n)} AS ts_text")
        else:
            values.append(f"{sql.field_value(n)} AS {n}")
        code, message = sql.field_problem(n, "ts_text" if n == "occurred_at" else n)
        if code != "NULL":
            problems.append((code, message))
    ts, ts_code, ts_message = sql.timestamp()
    codes = ", ".join(c for c, _ in problems)
    messages = ", ".join(m for _, m in problems)
    con.sql(
        f"""
        CREATE TEMP TABLE mapped AS
        WITH v AS (
            SELECT line, raw, cols, is_object, {skip} AS skipped, {skip_msg} AS skip_reason, {', '.join(values)}
            FROM rows WHERE is_object
        ),
        t AS (SELECT *, {ts} AS ts FROM v)
        SELECT *,
            list_filter([{codes + ', ' if codes else ''}{ts_code}], lambda x: x IS NOT NULL) AS codes,
            list_filter([{messages + ', ' if messages else ''}{ts_message}], lambda x: x IS NOT NULL) AS messages
        FROM t
        """
    )
    out_cols = ", ".join(
        "strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS occurred_at" if n == "occurred_at" else n for n in names
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = output.parent / f".{output.name}.tmp"
    tmp_rej = rejects.parent / f".{rejects.name}.tmp"
    con.sql(
        f"COPY (SELECT {out_cols} FROM mapped WHERE NOT skipped AND len(codes) = 0 ORDER BY line) "
        f"TO {_lit(str(tmp_out))} (FORMAT json)"
    )
    con.sql(
        f"""
        COPY (
            SELECT {_lit(path.name)} AS file, line, 'skipped' AS reason_code, skip_reason AS reason, raw AS raw_record
            FROM mapped WHERE skipped
            UNION ALL
            SELECT {_lit(path.name)}, line, codes[1], array_to_string(messages, '; '), raw
            FROM mapped WHERE NOT skipped AND len(codes) > 0
            UNION ALL
            SELECT {_lit(path.name)}, line,
                {_UNREADABLE_CODE}, {_UNREADABLE_REASON},
                raw
            FROM rows WHERE NOT is_object
            ORDER BY line
        ) TO {_lit(str(tmp_rej))} (FORMAT json)
        """
    )
    _publish(tmp_out, output)
    _publish(tmp_rej, rejects)
    result = MapResult(path, output, rejects)
    result.rows = con.sql("SELECT count(*) FROM raw_records").fetchall()[0][0]
    result.converted = con.sql("SELECT count(*) FROM mapped WHERE NOT skipped AND len(codes) = 0").fetchall()[0][0]
    result.skipped = con.sql("SELECT count(*) FROM mapped WHERE skipped").fetchall()[0][0]
    result.rejected_by_reason = dict(con.sql(
        "SELECT code, count(*) FROM (SELECT codes[1] AS code FROM mapped WHERE NOT skipped AND len(codes) > 0 "
        f"UNION ALL SELECT {_UNREADABLE_CODE} FROM rows WHERE NOT is_object) GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall())
    result.rejected = sum(result.rejected_by_reason.values())
    return result
