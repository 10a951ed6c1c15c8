"""CSV download routes: the data layer's DuckDB COPY writes the file, Starlette streams it from disk.

Nothing of the file passes through Python memory; the temporary folder goes once the response is sent.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Route

from dashboard import download_tokens
from dashboard.config import DashboardConfig

def _write_export(kind: str, query: str, dest: Path) -> int:
    from closeconv.reports.access import Warehouse
    from closeconv.reports.conversations import export_conversations_csv
    from closeconv.reports.filters import parse_query_params
    from closeconv.reports.users import export_users_csv

    config = DashboardConfig.from_env()
    wh = Warehouse(config.warehouse_path, timezone_override=config.timezone_override)
    filters, _ = parse_query_params(parse_qs(query, keep_blank_values=True))
    today = wh.today()
    if kind == "conversations":
        return export_conversations_csv(wh, filters, today, dest, redact_summaries=config.redact_summaries)
    return export_users_csv(wh, filters, today, dest)


async def export_csv(request: Request):
    kind = request.path_params["kind"]
    if kind not in download_tokens.EXPORT_KINDS:
        return PlainTextResponse("no such export", status_code=404)
    try:
        query = download_tokens.verify(request.query_params.get("token", ""), kind)
    except download_tokens.InvalidToken as exc:
        return PlainTextResponse(str(exc), status_code=403)
    folder = Path(tempfile.mkdtemp(prefix="closeconv-export-"))
    dest = folder / f"{kind}.csv"
    try:
        await run_in_threadpool(_write_export, kind, query, dest)
    except Exception as exc:  # the page stays usable; the browser shows why
        shutil.rmtree(folder, ignore_errors=True)
        return PlainTextResponse(f"export failed: {exc}", status_code=503)
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    return FileResponse(dest, media_type="text/csv", filename=f"closeconv-{kind}-{stamp}.csv",
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


ROUTES = [Route(download_tokens.EXPORT_PATH, export_csv, methods=["GET"])]
