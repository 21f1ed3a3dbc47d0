#!/bin/sh
# Add (or change) MQTT credentials for one gateway, or for the backend's ingest account.
#
#   deploy/mosquitto/add-gateway.sh GATEWAY_ID [PASSWORD]   # a home hub
#   deploy/mosquitto/add-gateway.sh --ingest [PASSWORD]     # the ingest workers' account
#
# The username is the gateway id: ./acl lets user X publish only under wardwatch/v1/gw/X/.
# Without PASSWORD a random one is generated and printed once (put it in the hub's
# uplink URL: mqtt://GATEWAY_ID:PASSWORD@broker:1883). Writes ./passwd next to this script
# (or $WARDWATCH_PASSWD_FILE) with mosquitto_passwd, from the host's mosquitto package or,
# failing that, from the eclipse-mosquitto image. A running broker reads the change on
# SIGHUP: docker compose -f deploy/compose.yaml kill -s SIGHUP mosquitto
set -eu

usage() {
    echo "usage: $0 GATEWAY_ID [PASSWORD] | $0 --ingest [PASSWORD]" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
here=$(cd "$(dirname "$0")" && pwd)
passwd_file=${WARDWATCH_PASSWD_FILE:-$here/passwd}

if [ "$1" = "--ingest" ]; then
    user=ingest
else
    user=$1
    # No MQTT wildcards or separators (they would widen the %u ACL patterns), and not the
    # backend's own account name.
    if ! printf '%s' "$user" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'; then
        echo "$0: gateway id '$user' must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)" >&2
        exit 2
    fi
    if [ "$user" = "ingest" ]; then
        echo "$0: 'ingest' is the backend's account; use --ingest for it" >&2
        exit 2
    fi
fi

if [ $# -eq 2 ]; then
    password=$2
    generated=no
else
    password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    generated=yes
fi
if [ ${#password} -lt 16 ]; then
    echo "$0: the password must be at least 16 characters" >&2
    exit 2
fi

create=""
[ -f "$passwd_file" ] || create="-c"
if command -v mosquitto_passwd >/dev/null 2>&1; then
    # shellcheck disable=SC2086 # $create is empty or one flag
    mosquitto_passwd $create -b "$passwd_file" "$user" "$password"
elif command -v docker >/dev/null 2>&1; then
    dir=$(cd "$(dirname "$passwd_file")" && pwd)
    # shellcheck disable=SC2086
    docker run --rm -v "$dir:/work" eclipse-mosquitto:2 \
        mosquitto_passwd $create -b "/work/$(basename "$passwd_file")" "$user" "$password"
else
    echo "$0: needs mosquitto_passwd (apt install mosquitto) or docker" >&2
    exit 1
fi

# Readable by the broker only: in the container mosquitto runs as uid 1883.
if [ "$(id -u)" = 0 ]; then
    chown 1883:1883 "$passwd_file" 2>/dev/null || true
    chmod 0600 "$passwd_file"
else
    chmod 0640 "$passwd_file"
    echo "$0: note: give $passwd_file to uid 1883 (sudo chown 1883 $passwd_file) so the broker container can read it" >&2
fi

echo "added MQTT user '$user' to $passwd_file" >&2
if [ "$generated" = yes ]; then
    echo "$password"
fi
