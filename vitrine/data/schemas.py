"""The data contracts: every column Vitrine accepts for events, users, items and merchants.

This module is the single definition; `docs/data.md` is rendered from it
(`vitrine schema --markdown`) and a test keeps the two in step. IDs are strings.
Timestamps are stored as UTC with microsecond precision so pandas and Spark both read them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa

MAX_LENGTH = 256  # characters of a string field unless its column says otherwise


class Kind(StrEnum):
    STRING = "string"
    ENUM = "enum"
    TIMESTAMP = "timestamp"
    INT = "int"
    FLOAT = "float"


_ARROW = {
    Kind.STRING: pa.string(),
    Kind.ENUM: pa.string(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.INT: pa.int64(),
    Kind.FLOAT: pa.float64(),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool
    doc: str
    allowed: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    max_length: int | None = None  # characters, for strings (default `MAX_LENGTH`)

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]

    @property
    def length_limit(self) -> int | None:
        return (self.max_length or MAX_LENGTH) if self.kind is Kind.STRING else None

    def constraint_text(self) -> str:
        parts = []
        if self.allowed:
            parts.append("one of " + ", ".join(f"`{a}`" for a in self.allowed))
        if self.length_limit is not None:
            parts.append(f"at most {self.length_limit:,} characters")
        if self.min_value is not None:
            parts.append(f">= {self.min_value:g}")
        if self.max_value is not None:
            parts.append(f"<= {self.max_value:g}")
        return "; ".join(parts)


@dataclass(frozen=True)
class TableSchema:
    name: str
    key: str
    doc: str
    columns: tuple[Column, ...]
    version_column: str | None = None  # latest value wins on upsert
    extra_notes: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return _arrow_schema(self.columns)


@functools.cache
def _arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:  # built once: a server checks every call against it
    return pa.schema([pa.field(c.name, c.arrow_type, nullable=not c.required) for c in columns])


EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")
# how much an event counts towards an item's popularity (the daily heat, the live hot counts)
EVENT_WEIGHTS = {"impression": 0.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
DEVICES = ("ios", "android", "web", "mini_program", "other")
SCENES = ("home", "search", "category", "item_detail", "cart", "other")
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
GENDERS = ("f", "m", "u")
ITEM_STATUSES = ("online", "offline")
MEMBER_LEVEL_MAX = 5

EVENTS = TableSchema(
    name="events",
    key="event_id",
    doc="One behaviour event: a user saw, clicked, carted or bought an item.",
    columns=(
        Column("event_id", Kind.STRING, False,
               "Stable id. When absent it is derived from the event's content, so "
               "re-ingesting the same rows is a no-op."),
        Column("event_time", Kind.TIMESTAMP, True,
               "When it happened: ISO-8601 text (an offset, or UTC when none) or a Parquet timestamp."),
        Column("user_id", Kind.STRING, True, "Who."),
        Column("item_id", Kind.STRING, True,
               "What. Must be in the items catalogue when the home has one."),
        Column("event_type", Kind.ENUM, True, "What kind of behaviour.", allowed=EVENT_TYPES),
        Column("session_id", Kind.STRING, False, "Browsing session."),
        Column("device", Kind.ENUM, False, "Client device.", allowed=DEVICES),
        Column("region", Kind.STRING, False, "Where the request came from (e.g. a province code)."),
        Column("scene", Kind.ENUM, False, "Page the item was shown on.", allowed=SCENES),
        Column("position", Kind.INT, False, "0-based slot on the page.", min_value=0, max_value=100_000),
        Column("price", Kind.FLOAT, False, "Price paid or shown, in the shop currency.", min_value=0,
               max_value=1e9),
        Column("quantity", Kind.INT, False, "Units bought (purchases).", min_value=1, max_value=100_000),
        Column("merchant_id", Kind.STRING, False, "Seller of the item, when the log has it."),
        Column("request_id", Kind.STRING, False,
               "The `Recommend` answer the item was shown in (its `request_id`): joins the event to the "
               "exposure log (`vitrine report ab`). Not part of the derived event id."),
    ),
    extra_notes=(
        "Logs without impressions are accepted: later stages sample negatives instead.",
        "Event times: `vitrine ingest` accepts any history since 1970 up to a day ahead of the machine's clock; "
        "the server (`TrackEvents`, `POST /collect`) accepts 30 days back to 10 minutes ahead of its clock "
        "(serving settings `event_past_days`, `event_future_minutes`).",
        "The event log adds a `date` partition (UTC day of `event_time`).",
    ),
)

USERS = TableSchema(
    name="users",
    key="user_id",
    doc="Registered users. Events may name users that are not in this table (guests).",
    version_column="updated_at",
    columns=(
        Column("user_id", Kind.STRING, True, "Primary key."),
        Column("signup_at", Kind.TIMESTAMP, False, "Registration time."),
        Column("age_band", Kind.ENUM, False, "Age band.", allowed=AGE_BANDS),
        Column("gender", Kind.ENUM, False, "Gender: female, male, unknown.", allowed=GENDERS),
        Column("region", Kind.STRING, False, "Home region."),
        Column("member_level", Kind.INT, False, "Membership tier.", min_value=0,
               max_value=MEMBER_LEVEL_MAX),
        Column("updated_at", Kind.TIMESTAMP, False, "Version time; the latest wins on upsert."),
    ),
)

ITEMS = TableSchema(
    name="items",
    key="item_id",
    doc="The catalogue. Items change over time; every accepted version is kept in the history.",
    version_column="updated_at",
    columns=(
        Column("item_id", Kind.STRING, True, "Primary key."),
        Column("merchant_id", Kind.STRING, False,
               "Seller. Must be in the merchants table when the home has one."),
        Column("category", Kind.STRING, False,
               "Category path, levels separated by `/` (e.g. `apparel/shoes`)."),
        Column("brand", Kind.STRING, False, "Brand name."),
        Column("price", Kind.FLOAT, False, "Current price.", min_value=0),
        Column("rating", Kind.FLOAT, False, "Average review rating.", min_value=0, max_value=5),
        Column("title", Kind.STRING, False, "Free text title.", max_length=2000),
        Column("tags", Kind.STRING, False, "Tags separated by `|`.", max_length=2000),
        Column("created_at", Kind.TIMESTAMP, False, "When the item was listed."),
        Column("updated_at", Kind.TIMESTAMP, False, "Version time; the latest wins on upsert."),
        Column("status", Kind.ENUM, False, "Listing status; missing means online.",
               allowed=ITEM_STATUSES),
    ),
)

MERCHANTS = TableSchema(
    name="merchants",
    key="merchant_id",
    doc="Sellers on the platform.",
    version_column="updated_at",
    columns=(
        Column("merchant_id", Kind.STRING, True, "Primary key."),
        Column("name", Kind.STRING, False, "Display name."),
        Column("region", Kind.STRING, False, "Where the merchant ships from."),
        Column("rating", Kind.FLOAT, False, "Merchant rating.", min_value=0, max_value=5),
        Column("created_at", Kind.TIMESTAMP, False, "When the merchant joined."),
        Column("updated_at", Kind.TIMESTAMP, False, "Version time; the latest wins on upsert."),
    ),
)

CATALOG_TABLES: dict[str, TableSchema] = {t.name: t for t in (MERCHANTS, ITEMS, USERS)}
ALL_TABLES: dict[str, TableSchema] = {**CATALOG_TABLES, EVENTS.name: EVENTS}


def render_markdown() -> str:
    """The contracts as the Markdown table set in docs/data.md."""
    out = [
        "# Data contracts",
        "",
        "Rendered from `vitrine/data/schemas.py` by `vitrine schema --markdown`; do not edit by hand.",
        "",
        "Files may be CSV (with a header row) or Parquet. IDs are strings. Unknown extra columns",
        "are ignored. Optional columns may be missing entirely or empty in some rows.",
        "Text values of enum columns are matched case-insensitively and stored lower-case.",
        "",
    ]
    for table in (EVENTS, USERS, ITEMS, MERCHANTS):
        out += [f"## `{table.name}`", "", table.doc, "", f"Key: `{table.key}`."]
        if table.version_column:
            out.append(f"Upsert: the row with the latest `{table.version_column}` wins "
                       "(a row without one replaces the stored row).")
        out += ["", "| column | type | required | allowed | meaning |", "|---|---|---|---|---|"]
        for c in table.columns:
            out.append(f"| `{c.name}` | {c.kind.value} | {'yes' if c.required else 'no'} | "
                       f"{c.constraint_text()} | {c.doc} |")
        out.append("")
        out += [f"- {note}" for note in table.extra_notes]
        if table.extra_notes:
            out.append("")
    return "\n".join(out)
