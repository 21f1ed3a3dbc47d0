-- SQLite schema 0006_access: people and services (same tables as TimescaleDB 0008_access).
-- Passwords as argon2 hashes, tokens as SHA-256 hashes only; times as iso() text.
CREATE TABLE users (
    username TEXT PRIMARY KEY, display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN
        ('nurse', 'physician', 'care-team-admin', 'system-admin', 'service')),
    password_hash TEXT, active INTEGER NOT NULL DEFAULT 1, created_at TEXT
);
CREATE TABLE team_members (
    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    team TEXT NOT NULL REFERENCES care_teams(id),
    PRIMARY KEY (username, team)
);
CREATE INDEX team_members_team ON team_members (team);
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY CHECK (length(token_hash) = 64),
    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('session', 'api')), name TEXT,
    created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT,
    CHECK (kind <> 'session' OR expires_at IS NOT NULL),
    CHECK (kind <> 'api' OR name IS NOT NULL)
);
CREATE INDEX access_tokens_username ON access_tokens (username, created_at);
CREATE UNIQUE INDEX access_tokens_live_api_name ON access_tokens (username, name)
    WHERE kind = 'api' AND revoked_at IS NULL;
CREATE TABLE login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL, remote TEXT, at TEXT NOT NULL
);
CREATE INDEX login_failures_username_at ON login_failures (username, at);
CREATE INDEX login_failures_remote_at ON login_failures (remote, at);
