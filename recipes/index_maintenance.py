"""``ragloom index recover`` and ``ragloom index verify``: finish interrupted writes, and check an index whole.

Readers never write, so an ingest interrupted by a kill, Ctrl-C or a full disk is finished by the next writer; these
commands do it (and check it) on request. ``verify`` reads every retriever back (checksums, counts) and compares
the documents each one holds with the document store of acknowledged documents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ragloom.errors import RagloomError
from ragloom.protocols import PersistentStore, VerifiableStore
from ragloom.retrieval import StoredRetrieverMethods

__all__ = ["RetrieverCheck", "VerifyReport", "index_app", "recover_index", "verify_index"]


@dataclass(frozen=True)
class RetrieverCheck:
    """One retriever against the document store: documents it lacks, documents it has that were never
    acknowledged, and the damage found reading it back."""

    name: str
    documents: int
    chunks: int
    missing: tuple[str, ...] = ()
    unacknowledged: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unacknowledged or self.errors)


@dataclass(frozen=True)
class VerifyReport:
    index: str
    acknowledged: int
    pending_write: bool
    retrievers: tuple[RetrieverCheck, ...] = field(default_factory=tuple)
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.pending_write and not self.errors and all(r.ok for r in self.retrievers)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def recover_index(index: Path, *, discard: bool = False, allow_download: bool = False) -> int:
    """Finish (or with ``discard``, give up) an interrupted write; returns the documents touched."""
    from ragloom.recipes.config import open_pipeline

    with open_pipeline(index, allow_download=allow_download) as pipeline:
        return pipeline.discard_pending() if discard else pipeline.recover()


def _read_back(retriever: Any) -> None:
    """Force a full read of a retriever's store: checksums are checked where the store keeps them."""
    store = retriever.store if isinstance(retriever, StoredRetrieverMethods) else None
    if isinstance(store, VerifiableStore):
        store.verify()
    if isinstance(store, PersistentStore) and store.path is not None:
        store.reload()  # every row read back: checksums are checked on load


def verify_index(index: Path, *, allow_download: bool = False) -> VerifyReport:
    """Check every retriever of an index against the document store (read-only: takes no lock)."""
    from ragloom.recipes.config import open_pipeline

    try:
        pipeline = open_pipeline(index, allow_download=allow_download)
    except RagloomError as exc:
        return VerifyReport(str(index), 0, False, (), (f"{type(exc).__name__}: {exc}",))
    with pipeline:
        acknowledged = set(pipeline.documents.digests())
        pending = pipeline.pending_write
        checks = []
        for retriever in pipeline.retrievers:
            errors: list[str] = []
            held: set[str] = set()
            try:
                _read_back(retriever)
                held = set(retriever.doc_ids())
            except RagloomError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            checks.append(
                RetrieverCheck(
                    retriever.name,
                    len(held),
                    len(retriever) if not errors else 0,
                    tuple(sorted(acknowledged - held))[:50] if not errors else (),
                    tuple(sorted(held - acknowledged))[:50] if acknowledged else (),
                    tuple(errors),
                )
            )
        return VerifyReport(str(index), len(acknowledged), pending, tuple(checks))


index_app = typer.Typer(help="Maintain an index: finish interrupted writes, verify it.", no_args_is_help=True)


@index_app.command("recover")
def recover_command(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    discard: Annotated[
        bool, typer.Option(help="Give up the interrupted batch: put back the acknowledged versions instead.")
    ] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
) -> None:
    """Finish an ingest or delete that was interrupted (kill, Ctrl-C, full disk); nothing acknowledged is removed."""
    try:
        touched = recover_index(index, discard=discard, allow_download=not offline)
    except RagloomError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    what = "discarded" if discard else "finished"
    typer.echo(f"{what} an interrupted write of {touched} document(s)" if touched else "nothing to recover")


@index_app.command("verify")
def verify_command(
    index: Annotated[Path, typer.Argument(help="Index directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
) -> None:
    """Read every retriever back (checksums, counts) and compare it with the acknowledged documents.
    Exit 0 when whole, 1 when damage or a difference was found."""
    report = verify_index(index, allow_download=not offline)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"{report.index}: {report.acknowledged} acknowledged document(s)")
        if report.pending_write:
            typer.echo("  an interrupted write is pending: run `ragloom index recover`")
        for error in report.errors:
            typer.echo(f"  error: {error}")
        for check in report.retrievers:
            state = "ok" if check.ok else "PROBLEM"
            typer.echo(f"  {check.name}: {check.documents} documents, {check.chunks} chunks: {state}")
            for error in check.errors:
                typer.echo(f"    {error}")
            if check.missing:
                typer.echo(f"    missing {len(check.missing)}: {', '.join(check.missing[:5])}")
            if check.unacknowledged:
                typer.echo(f"    never acknowledged {len(check.unacknowledged)}: {', '.join(check.unacknowledged[:5])}")
    raise typer.Exit(code=0 if report.ok else 1)
