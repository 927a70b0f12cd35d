#!/bin/sh
# Runs once, on an empty data directory (the image's docker-entrypoint-initdb.d): one database and one role per
# component, the role alone may connect to its database. Passwords come from the Secret, through the environment.
set -eu
for component in $ARCHBENCH_DATABASES; do
  upper=$(echo "$component" | tr a-z A-Z)
  password=$(printenv "ARCHBENCH_DB_PASSWORD_$upper")
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="archbench_$component" -v db="$component" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done
