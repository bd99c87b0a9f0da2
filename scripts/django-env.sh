#!/usr/bin/env bash
# Prints the path of a Python that has Django 5.2, Django REST Framework,
# SimpleJWT and psycopg (the oracle of the import tests, tests/django),
# installing them from PyPI into the throwaway virtual environment
# target/django-venv when it lacks them. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/django-venv
if ! "$VENV/bin/python" -c 'import django, rest_framework, rest_framework_simplejwt, psycopg' 2>/dev/null; then
  echo "installing Django 5.2, DRF, SimpleJWT and psycopg into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "django>=5.2,<5.3" "djangorestframework>=3.15" "djangorestframework-simplejwt>=5.5,<5.6" \
    "psycopg[binary]>=3.1" >&2
fi
echo "$PWD/$VENV/bin/python"
