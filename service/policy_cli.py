"""`memotion policy ...`: manage moderation policies in the gateway's database (MEMOTION_DATABASE_URL)
from a shell, audited as ``cli:<user>``; the same store as the admin API (service/moderation)."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    policy = commands.add_parser(
        "policy",
        help="moderation policies: list, show, set, assign to API keys, audit log",
        description="Policies turn scores into allow / review / block. They live in the gateway's database "
        "(MEMOTION_DATABASE_URL, or --url); a running gateway picks a change up within "
        "MEMOTION_POLICY_REFRESH_S. Changes are audited as cli:<user>.",
    )
    policy.add_argument("--url", help="database URL (default: MEMOTION_DATABASE_URL)")
    actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="every policy, its version and the keys it is assigned to").set_defaults(
        handler=_list
    )
    show = actions.add_parser("show", help="a policy's rules (JSON)")
    show.add_argument("name")
    show.add_argument("--version", type=int, help="default: the current version")
    show.set_defaults(handler=_show)
    put = actions.add_parser("set", help="create a policy or add a version from a JSON file of rules")
    put.add_argument("name")
    put.add_argument("--file", type=Path, required=True, help="the rules as JSON (README: Moderation)")
    put.add_argument("--repository", type=Path, help="check the rules against this model repository's heads")
    put.set_defaults(handler=_set)
    assign = actions.add_parser("assign", help="assign a policy to an API key name (* : the default)")
    assign.add_argument("key")
    assign.add_argument("name")
    assign.set_defaults(handler=_assign)
    unassign = actions.add_parser("unassign", help="remove an API key's assignment")
    unassign.add_argument("key")
    unassign.set_defaults(handler=_unassign)
    audit = actions.add_parser("audit", help="the audit log, oldest first (JSON Lines)")
    audit.add_argument("--limit", type=int, default=100)
    audit.set_defaults(handler=_audit)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"[:64]


def _in_session(args: argparse.Namespace, work: Any) -> Any:
    from service.core.settings import GatewaySettings
    from service.store.engine import Database
    from service.store.migrate import ensure_schema

    settings = GatewaySettings(**({"database_url": args.url} if args.url else {}))
    db = Database.open(settings.database_url, settings.database_timeout_s)
    try:
        ensure_schema(db, migrate=settings.database_migrate)
        with db.session() as session:
            return work(session)
    finally:
        db.close()


def _list(args: argparse.Namespace) -> int:
    from service.moderation.policy_store import list_policies

    for row in _in_session(args, list_policies):
        print(json.dumps(row))
    return 0


def _show(args: argparse.Namespace) -> int:
    from service.moderation.policy_store import PolicyNotFound, get_policy

    try:
        stored = _in_session(args, lambda s: get_policy(s, args.name, args.version))
    except PolicyNotFound as err:
        raise ValueError(str(err.args[0])) from err
    print(json.dumps(stored.as_dict(), indent=2))
    return 0


def _check_heads(rules: Any, repository: Path) -> None:
    from memotion.manifest import load_manifest
    from service.moderation.policy import check_rules, neutral_scores

    manifest = load_manifest(repository)
    check_rules(rules, neutral_scores({t.name: t.labels for t in manifest.tasks}, manifest.task_b_names))


def _set(args: argparse.Namespace) -> int:
    import re

    from pydantic import ValidationError

    from service.moderation.policy import NAME_PATTERN, PolicyRules
    from service.moderation.policy_store import put_policy

    if not re.fullmatch(NAME_PATTERN.strip("^$"), args.name):
        raise ValueError(f"policy name {args.name!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    try:
        rules = PolicyRules.model_validate_json(args.file.read_text())
    except ValidationError as err:
        raise ValueError(f"{args.file}: not a policy: {err}") from err
    if args.repository is not None:
        _check_heads(rules, args.repository)
    stored = _in_session(args, lambda s: put_policy(s, args.name, rules, _actor()))
    print(f"policy {stored.name} is at version {stored.version}")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from service.moderation.policy_store import PolicyNotFound, assign

    try:
        _in_session(args, lambda s: assign(s, args.key, args.name, _actor()))
    except PolicyNotFound as err:
        raise ValueError(str(err.args[0])) from err
    print(f"{args.key} -> {args.name}")
    return 0


def _unassign(args: argparse.Namespace) -> int:
    from service.moderation.policy_store import unassign

    if not _in_session(args, lambda s: unassign(s, args.key, _actor())):
        raise ValueError(f"no policy is assigned to {args.key!r}")
    print(f"{args.key}: no own policy (the default applies)")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from service.moderation.audit import entries

    for row in _in_session(args, lambda s: entries(s, limit=args.limit)):
        print(json.dumps(row))
    return 0
