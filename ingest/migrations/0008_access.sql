-- wardwatch TimescaleDB schema, version 8: people and services (issue 7).
-- Same tables as SQLite migration 0006_access. Passwords are kept as argon2 hashes and
-- tokens as SHA-256 hashes only (alerting/access.py hashes; the store never sees either).

CREATE TABLE users (
    username      text PRIMARY KEY,
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN
                      ('nurse', 'physician', 'care-team-admin', 'system-admin', 'service')),
    password_hash text,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz
);

-- Which care teams a person belongs to (their patients are the ones they see).
CREATE TABLE team_members (
    username text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    team     text NOT NULL REFERENCES care_teams (id),
    PRIMARY KEY (username, team)
);
CREATE INDEX team_members_team ON team_members (team);

-- Session tokens (from a login, fixed expiry) and API tokens (named, for services).
CREATE TABLE access_tokens (
    token_hash text PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    username   text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('session', 'api')),
    name       text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    CHECK (kind <> 'session' OR expires_at IS NOT NULL),
    CHECK (kind <> 'api' OR name IS NOT NULL)
);
CREATE INDEX access_tokens_username ON access_tokens (username, created_at);
-- One live API token per user and name, so `token revoke --name` means one token.
CREATE UNIQUE INDEX access_tokens_live_api_name ON access_tokens (username, name)
    WHERE kind = 'api' AND revoked_at IS NULL;

-- Failed logins for rate limiting (the audit trail keeps the lasting record). The user
-- name is whatever was typed, so no foreign key.
CREATE TABLE login_failures (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL,
    remote   text,
    at       timestamptz NOT NULL
);
CREATE INDEX login_failures_username_at ON login_failures (username, at);
CREATE INDEX login_failures_remote_at ON login_failures (remote, at);
