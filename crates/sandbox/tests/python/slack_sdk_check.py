#!/usr/bin/env python3
"""Drives the sandbox's Slack Web API with Slack's official Python SDK (slack_sdk).

Usage: slack_sdk_check.py SLACK_API_URL BOT_TOKEN SEED_URL

Checks auth.test, paginated conversations.list and users.list (small pages, so the SDK's own
cursor iteration is exercised) against GET /_sandbox/seed, then the not_in_channel →
conversations.join → chat.postMessage path and SlackApiError on an error. Exits non-zero on
any mismatch, and when slack_sdk is not installed (the calling test must fail, not skip).
"""

import json
import sys
import urllib.request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        fail("usage: slack_sdk_check.py SLACK_API_URL BOT_TOKEN SEED_URL")
    api_url, token, seed_url = sys.argv[1:]
    with urllib.request.urlopen(seed_url) as resp:
        seed = json.load(resp)["slack"]

    client = WebClient(token=token, base_url=api_url)

    auth = client.auth_test()
    if not auth["ok"] or auth["team_id"] != seed["team_id"] or auth["user_id"] != seed["bot_user_id"]:
        fail(f"auth.test disagrees with the seed: {auth.data}")

    # Public channels, two per page, through the SDK's cursor iteration.
    public, pages = [], 0
    for page in client.conversations_list(limit=2, types="public_channel"):
        pages += 1
        public.extend(c["id"] for c in page["channels"])
    expected_public = [c["id"] for c in seed["channels"] if not c["is_private"]]
    if public != expected_public:
        fail(f"conversations.list: {public} != {expected_public}")
    if pages < 2:
        fail("conversations.list was not paginated")

    # Private channels: only those the bot is a member of.
    private = []
    for page in client.conversations_list(limit=1, types="private_channel"):
        private.extend(c["id"] for c in page["channels"])
    expected_private = [c["id"] for c in seed["channels"] if c["is_private"] and c["is_member"]]
    if private != expected_private:
        fail(f"private channels: {private} != {expected_private}")

    users, pages = [], 0
    for page in client.users_list(limit=3):
        pages += 1
        users.extend(page["members"])
    if [u["id"] for u in users] != [u["id"] for u in seed["users"]]:
        fail(f"users.list returned {len(users)} users, the seed has {len(seed['users'])}")
    if pages < 3:
        fail("users.list was not paginated")
    by_id = {u["id"]: u for u in users}
    for s in seed["users"]:
        u = by_id[s["id"]]
        if u["name"] != s["name"] or u["profile"].get("email") != s["email"]:
            fail(f"user {s['id']} differs: {u} vs {s}")
        if u["is_bot"] != s["is_bot"] or u["deleted"] != s["deleted"]:
            fail(f"user flags differ for {s['name']}")

    # Errors surface as SlackApiError; joining fixes not_in_channel.
    target = next(c for c in seed["channels"] if not c["is_private"] and not c["is_member"]
                  and not c.get("is_archived"))
    try:
        client.chat_postMessage(channel=target["id"], text="hello")
        fail("posting outside the channel should fail")
    except SlackApiError as e:
        if e.response["error"] != "not_in_channel":
            fail(f"expected not_in_channel, got {e.response['error']}")
    client.conversations_join(channel=target["id"])
    posted = client.chat_postMessage(channel=target["id"], text="hello from slack_sdk")
    if posted["channel"] != target["id"] or not posted["ts"]:
        fail(f"chat.postMessage: {posted.data}")
    history = client.conversations_history(channel=target["id"], limit=1)
    if history["messages"][0]["ts"] != posted["ts"]:
        fail("the posted message is not the newest in history")

    print(json.dumps({
        "ok": True,
        "public_channels": len(public),
        "private_channels": len(private),
        "users": len(users),
    }))


if __name__ == "__main__":
    main()
