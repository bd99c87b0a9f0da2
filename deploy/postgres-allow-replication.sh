#!/bin/bash
# Run once by the postgres image when it creates the primary's database
# (docker-compose.cluster.yml): the standby may connect for replication with
# the database account's password.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
