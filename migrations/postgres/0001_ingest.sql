-- Ingest schema: registry versions, interned names, usage records, running accruals, API
-- tokens. Capacity per SKU and clock hour is derived from usage_records at start, in memory.
-- Append-only: never edit a merged migration.

CREATE TABLE registry_versions (
    version      BIGINT PRIMARY KEY,
    content_hash TEXT   NOT NULL,
    toml_text    TEXT   NOT NULL,
    loaded_at    TEXT   NOT NULL
);

CREATE TABLE names (
    id   BIGINT PRIMARY KEY,
    kind TEXT   NOT NULL,
    name TEXT   NOT NULL,
    UNIQUE (kind, name)
);

-- class_code: index into suanli_domain::registry::Class::ALL (see the SQLite migration).
CREATE TABLE usage_records (
    provider_id      BIGINT NOT NULL,
    record_id        TEXT   NOT NULL,
    beneficiary_id   BIGINT NOT NULL,
    sku_id           BIGINT NOT NULL,
    start_ns         BIGINT NOT NULL,
    end_ns           BIGINT NOT NULL,
    quantity         TEXT   NOT NULL,
    amount_fen       BIGINT NOT NULL,
    period           BIGINT NOT NULL,
    class_code       BIGINT NOT NULL,
    registry_version BIGINT NOT NULL,
    voided_at        TEXT,
    void_reason      TEXT,
    PRIMARY KEY (provider_id, record_id)
);

CREATE TABLE accruals (
    beneficiary      TEXT   NOT NULL,
    provider         TEXT   NOT NULL,
    category         TEXT   NOT NULL,
    chip_origin      TEXT   NOT NULL,
    registered_model TEXT   NOT NULL,
    period           TEXT   NOT NULL,
    amount_fen       BIGINT NOT NULL,
    records          BIGINT NOT NULL,
    PRIMARY KEY (beneficiary, provider, category, chip_origin, registered_model, period)
);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
