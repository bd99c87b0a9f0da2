#!/usr/bin/env python3
"""The Django side of the import tests (tests/api/django_cutover.rs): fills the
Django database with Django's own ORM, hashers and SimpleJWT, and says what
the original backend holds, so the Rust side can compare. Every command
prints one JSON document.

    oracle.py fill               users, chats, messages, tokens (first import)
    oracle.py more               writes after the first import (second import)
    oracle.py expect             chats' histories in order, and each user's chat list
    oracle.py verify ACCESS REFRESH   SimpleJWT's reading of tokens we issued
    oracle.py bulk N             N more messages, fast (the kill test)
"""
import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
import django  # noqa: E402

django.setup()

import jwt  # noqa: E402  (PyJWT, SimpleJWT's dependency)
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password  # noqa: E402
from rest_framework_simplejwt.authentication import JWTAuthentication  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken  # noqa: E402

from chat.models import Chat, Message  # noqa: E402
from users.models import User  # noqa: E402

BASE = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def pair_key(a, b):
    low, high = min(a, b), max(a, b)
    return hashlib.sha256(f"pair:{low}:{high}".encode()).hexdigest()


def chat_of(users, key=None):
    ids = [u.id for u in users]
    chat = Chat.objects.create(pair_key=key or pair_key(ids[0], ids[-1]))
    chat.participants.set(users)
    return chat


def say(chat, sender, content, at, metadata=None):
    message = Message.objects.create(
        chat=chat, sender=sender, content=content, metadata=metadata or {}
    )
    Message.objects.filter(pk=message.pk).update(created_at=at)
    return message


class Django32Hasher(PBKDF2PasswordHasher):
    """Django's own PBKDF2 hasher at Django 3.2's 260,000 rounds: the hash of an
    account that has not logged in since (its rounds are read from the hash)."""

    iterations = 260_000


def user(email, password, name, old_hash=False, **fields):
    made = User.objects.create_user(email=email, password=None, full_name=name, **fields)
    if password is not None:
        hasher = Django32Hasher() if old_hash else "default"
        User.objects.filter(pk=made.pk).update(password=make_password(password, hasher=hasher))
        made.refresh_from_db()
    return made


def fill():
    ann = user("ann@example.com", "ann-password-1", "Ann Archer", nickname="annie",
               other_info={"team": "blue", "tags": [1, 2]})
    bob = user("Bob@EXAMPLE.com", "bob-password-2", "Bob Baker", old_hash=True)
    carol = user("carol@example.com", "carol-password-3", "Carol Cole", nickname="",
                 old_hash=True)
    dave = user("dave@example.com", "dave-password-4", "Dave Dunn", old_hash=True)
    erin = user("erin@example.com", None, "Erin Unusable")
    frank = user("frank@example.com", "frank-password-6", "Frank Format")
    User.objects.filter(pk=frank.pk).update(
        password="bcrypt_sha256$$2b$12$0123456789012345678901uQfBdqe5yJXl1UOBqIVN0eQ5lNAXH/y"
    )
    gina = user("gina@example.com", "gina-password-7", "Gina Green", old_hash=True)

    ann_bob = chat_of([ann, bob])
    for n in range(1, 31):
        at = BASE + timedelta(seconds=n)
        if n in (10, 11, 12):
            at = BASE + timedelta(seconds=10)  # equal timestamps: ordered by id
        sender = ann if n % 2 else bob
        say(ann_bob, sender, f"ann-bob {n}", at, {"n": n, "nested": {"ok": n % 3 == 0}})
    # Stored later (a higher id) but written earlier: ordered by time, not id.
    say(ann_bob, bob, "ann-bob late arrival", BASE + timedelta(seconds=5, microseconds=1))

    ann_carol = chat_of([ann, carol])
    say(ann_carol, carol, "hi ann", BASE + timedelta(minutes=5))
    chat_of([bob, carol])  # no messages
    ann_dave = chat_of([ann, dave])
    say(ann_dave, dave, "dave was here", BASE + timedelta(minutes=1))
    # Not importable: three participants; a wrong pair key; an outsider's message.
    crowd = chat_of([ann, bob, carol], key=hashlib.sha256(b"crowd").hexdigest())
    say(crowd, carol, "three is a crowd", BASE + timedelta(minutes=2))
    chat_of([gina, frank], key="0" * 64)
    ann_gina = chat_of([ann, gina])
    say(ann_gina, gina, "hello gina here", BASE + timedelta(minutes=3))
    say(ann_gina, bob, "bob is not in this chat", BASE + timedelta(minutes=4))

    ann_refresh = RefreshToken.for_user(ann)
    revoked = RefreshToken.for_user(ann)
    revoked.blacklist()
    dave_refresh = RefreshToken.for_user(dave)
    numeric = jwt.encode(
        {**ann_refresh.access_token.payload, "user_id": ann.id, "jti": "numeric-user-id"},
        settings.SECRET_KEY,
        algorithm="HS256",
    )
    User.objects.filter(pk=dave.pk).update(is_active=False)
    return {
        "users": {
            u.email.split("@")[0].lower(): {"id": u.id, "email": u.email}
            for u in [ann, bob, carol, dave, erin, frank, gina]
        },
        "passwords": {
            "ann": "ann-password-1", "bob": "bob-password-2", "carol": "carol-password-3",
            "dave": "dave-password-4", "frank": "frank-password-6", "gina": "gina-password-7",
        },
        "tokens": {
            "ann_access": str(ann_refresh.access_token),
            "ann_refresh": str(ann_refresh),
            "ann_numeric_access": numeric,
            "ann_revoked_refresh": str(revoked),
            "dave_access": str(dave_refresh.access_token),
            "dave_refresh": str(dave_refresh),
        },
        "chats": {"ann_bob": ann_bob.id, "ann_carol": ann_carol.id, "ann_dave": ann_dave.id,
                  "crowd": crowd.id, "ann_gina": ann_gina.id},
    }


def more():
    ann = User.objects.get(email="ann@example.com")
    bob = User.objects.get(email="Bob@example.com")
    ivan = user("ivan@example.com", "ivan-password-9", "Ivan New", old_hash=True)
    ann_bob = Chat.objects.get(pair_key=pair_key(ann.id, bob.id))
    for n in range(31, 36):
        say(ann_bob, ann, f"ann-bob {n}", BASE + timedelta(hours=1, seconds=n))
    ann_ivan = chat_of([ann, ivan])
    say(ann_ivan, ivan, "ivan arrives", BASE + timedelta(hours=2))
    User.objects.filter(email="gina@example.com").update(full_name="Gina Renamed", is_active=False)
    return {"ivan": {"id": ivan.id, "email": ivan.email}, "ann_ivan": ann_ivan.id}


def importable(chat):
    ids = sorted(chat.participants.values_list("id", flat=True))
    return len(ids) == 2 and chat.pair_key == pair_key(*ids), ids


def expect():
    chats, lists = {}, {}
    for chat in Chat.objects.order_by("id"):
        ok, ids = importable(chat)
        if not ok:
            continue
        messages = chat.messages.filter(sender_id__in=ids).order_by("created_at", "id")
        chats[chat.id] = [
            {"id": m.id, "content": m.content, "metadata": m.metadata, "sender": m.sender_id,
             "created_at": m.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            for m in messages
        ]
        activity = messages.last().created_at if messages else chat.created_at
        for uid in ids:
            lists.setdefault(uid, []).append((activity, chat.id))
    order = {uid: [cid for _, cid in sorted(v, reverse=True)] for uid, v in lists.items()}
    return {"chats": chats, "chat_lists": order}


def verify(access, refresh):
    auth = JWTAuthentication()
    validated = auth.get_validated_token(access)
    RefreshToken(refresh).check_blacklist()
    return {"access_user": auth.get_user(validated).id,
            "refresh_user": int(RefreshToken(refresh)["user_id"]),
            "access_type": AccessToken(access)["token_type"]}


def bulk(count):
    pair = [user(f"bulk-{side}@example.com", None, f"Bulk {side}") for side in "ab"]
    chat = chat_of(pair)
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO chat_message (chat_id, sender_id, content, metadata, created_at)
               SELECT %s, %s, 'bulk message ' || g, '{"bulk": true}'::jsonb,
                      now() + g * interval '1 microsecond'
               FROM generate_series(1, %s) g""",
            [chat.id, pair[0].id, count],
        )
    return {"chat": chat.id}


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    result = {"fill": fill, "more": more, "expect": expect}.get(command)
    if command == "verify":
        result = verify(*args)
    elif command == "bulk":
        result = bulk(int(args[0]))
    else:
        result = result()
    print(json.dumps(result, default=str))
