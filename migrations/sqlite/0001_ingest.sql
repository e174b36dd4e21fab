-- Ingest schema: registry versions, interned names, usage records, running accruals, API
-- tokens. Capacity per SKU and clock hour is derived from usage_records at start, in memory.
-- Append-only: never edit a merged migration.

CREATE TABLE registry_versions (
    version      INTEGER PRIMARY KEY,
    content_hash TEXT    NOT NULL,
    toml_text    TEXT    NOT NULL,
    loaded_at    TEXT    NOT NULL
);

-- Provider, beneficiary and SKU ids interned to integers, so usage rows and their key are compact.
CREATE TABLE names (
    id   INTEGER PRIMARY KEY,
    kind TEXT    NOT NULL,  -- 'provider' | 'beneficiary' | 'sku'
    name TEXT    NOT NULL,
    UNIQUE (kind, name)
);

-- One B-tree: the table is its primary key (provider, record_id), the idempotency key.
-- class_code is the index of the SKU's class in suanli_domain::registry::Class::ALL:
-- 0 compute/domestic, 1 compute/other, 2 data, 3 model/unregistered, 4 model/registered.
-- period is yyyymm (Asia/Shanghai month of end_ns); times are Unix nanoseconds.
CREATE TABLE usage_records (
    provider_id      INTEGER NOT NULL,
    record_id        TEXT    NOT NULL,
    beneficiary_id   INTEGER NOT NULL,
    sku_id           INTEGER NOT NULL,
    start_ns         INTEGER NOT NULL,
    end_ns           INTEGER NOT NULL,
    quantity         TEXT    NOT NULL,
    amount_fen       INTEGER NOT NULL,
    period           INTEGER NOT NULL,
    class_code       INTEGER NOT NULL,
    registry_version INTEGER NOT NULL,
    voided_at        TEXT,
    void_reason      TEXT,
    PRIMARY KEY (provider_id, record_id)
) WITHOUT ROWID;

-- Running totals of records that are not void, per settlement line key and period (R6),
-- updated in the transaction that stores or voids the records.
CREATE TABLE accruals (
    beneficiary      TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    category         TEXT    NOT NULL,
    chip_origin      TEXT    NOT NULL,  -- '' where not applicable
    registered_model TEXT    NOT NULL,  -- 'true' | 'false' | '' where not applicable
    period           TEXT    NOT NULL,  -- YYYY-MM
    amount_fen       INTEGER NOT NULL,
    records          INTEGER NOT NULL,
    PRIMARY KEY (beneficiary, provider, category, chip_origin, registered_model, period)
) WITHOUT ROWID;

-- Only the sha256 of a token is stored.
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    subject    TEXT NOT NULL,  -- provider or beneficiary id for those roles, else ''
    created_at TEXT NOT NULL
) WITHOUT ROWID;
