#!/usr/bin/env python3
"""Drives the sandbox's Slack Web API with Slack's official Python SDK (slack_sdk).

Usage: slack_sdk_check.py SLACK_API_URL BOT_TOKEN SEED_URL [APP_TOKEN]

Checks auth.test, paginated conversations.list and users.list (small pages, so the SDK's own
cursor iteration is exercised) against GET /_sandbox/seed, then the not_in_channel →
conversations.join → chat.postMessage path and SlackApiError on an error, then every other
Web API method the Slack adapter calls: team.info, conversations.info, conversations.members,
users.info, chat.update, conversations.replies, reactions.add/remove (Slack's own emoji names;
an unknown name is invalid_name), the external file upload (files.getUploadURLExternal, the
upload, files.completeUploadExternal), files.info, chat.delete, and apps.connections.open with
the app-level token. Exits non-zero on any mismatch, and when slack_sdk is not installed (the
calling test must fail, not skip).
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
    if len(sys.argv) not in (4, 5):
        fail("usage: slack_sdk_check.py SLACK_API_URL BOT_TOKEN SEED_URL [APP_TOKEN]")
    api_url, token, seed_url = sys.argv[1:4]
    app_token = sys.argv[4] if len(sys.argv) == 5 else None
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

    # The rest of what the adapter calls.
    team = client.team_info()
    if team["team"]["id"] != seed["team_id"]:
        fail(f"team.info: {team.data}")
    info = client.conversations_info(channel=target["id"])
    if info["channel"]["id"] != target["id"]:
        fail(f"conversations.info: {info.data}")
    members = []
    for page in client.conversations_members(channel=target["id"], limit=1):
        members.extend(page["members"])
    if auth["user_id"] not in members:
        fail(f"conversations.members lacks the bot after joining: {members}")
    human = next(u for u in seed["users"] if not u["is_bot"] and not u["deleted"])
    who = client.users_info(user=human["id"])
    if who["user"]["id"] != human["id"] or who["user"]["name"] != human["name"]:
        fail(f"users.info: {who.data}")
    updated = client.chat_update(channel=target["id"], ts=posted["ts"], text="edited by slack_sdk")
    if updated["ts"] != posted["ts"]:
        fail(f"chat.update: {updated.data}")
    reply = client.chat_postMessage(channel=target["id"], text="a reply", thread_ts=posted["ts"])
    replies = client.conversations_replies(channel=target["id"], ts=posted["ts"])
    if [m["ts"] for m in replies["messages"]] != [posted["ts"], reply["ts"]]:
        fail(f"conversations.replies: {replies.data}")
    client.reactions_add(channel=target["id"], timestamp=posted["ts"], name="thinking_face")
    client.reactions_remove(channel=target["id"], timestamp=posted["ts"], name="thinking_face")
    try:
        client.reactions_add(channel=target["id"], timestamp=posted["ts"], name="thinking")
        fail("reactions.add accepted a name that is not Slack's (gemoji's 'thinking')")
    except SlackApiError as e:
        if e.response["error"] != "invalid_name":
            fail(f"expected invalid_name, got {e.response['error']}")
    content = b"hello file"
    ticket = client.files_getUploadURLExternal(filename="hello.txt", length=len(content))
    req = urllib.request.Request(ticket["upload_url"], data=content, method="POST")
    with urllib.request.urlopen(req) as resp:
        if resp.status != 200:
            fail(f"upload to upload_url answered {resp.status}")
    done = client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"], "title": "hello.txt"}],
        channel_id=target["id"],
        thread_ts=posted["ts"],
    )
    if done["files"][0]["id"] != ticket["file_id"]:
        fail(f"files.completeUploadExternal: {done.data}")
    finfo = client.files_info(file=ticket["file_id"])
    if finfo["file"]["id"] != ticket["file_id"] or finfo["file"]["size"] != len(content):
        fail(f"files.info: {finfo.data}")
    client.chat_delete(channel=target["id"], ts=reply["ts"])
    after = client.conversations_replies(channel=target["id"], ts=posted["ts"])
    if reply["ts"] in [m["ts"] for m in after["messages"]]:
        fail("chat.delete left the reply in place")
    sockets = None
    if app_token:
        opened = WebClient(base_url=api_url).apps_connections_open(app_token=app_token)
        if not opened["url"].startswith(("ws://", "wss://")):
            fail(f"apps.connections.open: {opened.data}")
        sockets = True

    print(json.dumps({
        "ok": True,
        "socket_mode": sockets,
        "public_channels": len(public),
        "private_channels": len(private),
        "users": len(users),
    }))


if __name__ == "__main__":
    main()
