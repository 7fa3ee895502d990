"""`memotion export-reviews`: the review queue's decided memes, with their corrected labels, as a
Memotion-format folder for `memotion train --data` (service/moderation/review_export.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share in [0, 1)")
    return value


def register(commands: Any) -> None:
    export = commands.add_parser(
        "export-reviews",
        help="write the decided review items with corrected labels as a Memotion-format training folder",
        description="Write OUT/train.csv, OUT/val.csv and OUT/image/<split>/review-<id>.* from the decided "
        "review items of the gateway's database (MEMOTION_DATABASE_URL, or --url): their corrected labels, "
        "their kept image (else the thumbnail). Each split is read back as `memotion train --data OUT` reads "
        "it, and the export fails if any meme would be lost. Items without an image or labels are listed.",
    )
    export.add_argument("--out", type=Path, required=True, help="the data set folder to write")
    export.add_argument("--url", help="database URL (default: MEMOTION_DATABASE_URL)")
    export.add_argument(
        "--base", type=Path, help="a Memotion-format folder whose splits come first (the reviews add to it)"
    )
    export.add_argument(
        "--val-share", type=share, default=0.2, help="share of the reviewed memes in val.csv (default 0.2)"
    )
    export.set_defaults(handler=_export_reviews)


def _export_reviews(args: argparse.Namespace) -> int:
    from service.core.settings import GatewaySettings
    from service.moderation.review_export import export_reviews
    from service.store.engine import Database
    from service.store.migrate import ensure_schema

    settings = GatewaySettings(**({"database_url": args.url} if args.url else {}))
    db = Database.open(settings.database_url, settings.database_timeout_s)
    try:
        ensure_schema(db, migrate=False)
        with db.session() as session:
            summary = export_reviews(session, args.out, val_share=args.val_share, base=args.base)
    finally:
        db.close()
    print(summary.line())
    return 0
