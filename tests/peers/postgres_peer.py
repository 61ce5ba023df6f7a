"""A PostgreSQL client (psycopg 3, over libpq) using the logins Tessera's `postgres`
target issues, as an application would.

    postgres_peer.py login HOST PORT DBNAME USER PASSWORD SQL...

Connects with exactly the given user and password (no environment, no password file),
runs each SQL statement in its own transaction and prints one JSON object:
{"connected": true, "user": current_user, "results": [{"ok": true, "rows": [...]} or
{"ok": false, "sqlstate": "42501"}]}, or {"connected": false, "error": ...} with the
server's message when it refuses the login (libpq reports no SQLSTATE for that).
"""

import json
import sys

import psycopg


def login(host, port, dbname, user, password, statements):
    try:
        conn = psycopg.connect(
            host=host, port=port, dbname=dbname, user=user, password=password,
            passfile="/nonexistent", connect_timeout=10, autocommit=True,
        )
    except psycopg.OperationalError as e:
        return {"connected": False, "error": str(e).strip()}
    results = []
    with conn:
        current = conn.execute("SELECT current_user").fetchone()[0]
        for sql in statements:
            try:
                cursor = conn.execute(sql)
                rows = cursor.fetchall() if cursor.description is not None else []
                results.append({"ok": True, "rows": [list(r) for r in rows]})
            except psycopg.Error as e:
                results.append({"ok": False, "sqlstate": e.sqlstate})
    return {"connected": True, "user": current, "results": results}


def main():
    command, *args = sys.argv[1:]
    if command != "login":
        sys.exit(f"unknown command {command}")
    host, port, dbname, user, password, *statements = args
    print(json.dumps(login(host, port, dbname, user, password, statements)))


if __name__ == "__main__":
    main()
