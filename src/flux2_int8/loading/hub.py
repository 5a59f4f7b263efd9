"""Checkpoint files named on the Hugging Face hub (`owner/repo/file.safetensors`), through its cache.

Downloads go through huggingface_hub, so files land in (and are reused from) the
standard HF cache and `HF_HOME`, `HF_HUB_OFFLINE` and `hf auth login` work as users
expect. A machine that cannot reach the hub and has nothing cached gets one message
saying what is missing and how to provide it, not a stack of HTTP retries. Both loaders
and `load_pipeline` (whose base folders come through `generate.hub`) resolve files here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import CheckpointError, Flux2Int8Error
from ..planning.sources import HUB_FILE



def resolve_checkpoint(spec: str | Path, local_files_only: bool, token: str | bool | None = None) -> Path:
    """A local checkpoint path, or a hub file `owner/repo/file.safetensors` fetched through the cache."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    match = HUB_FILE.match(str(spec))
    if match is None:
        raise CheckpointError(spec, "no such file or folder (a file on the hub is written owner/repo/file.safetensors)")
    repo_id, filename = match["repo"], match["file"]
    with hub_errors(f"the checkpoint '{spec}'", repo_id, f"hf download {repo_id} {filename}", "pass the checkpoint's local path", local_files_only):
        return Path(hf_hub_download(repo_id, filename, local_files_only=local_files_only, token=token))


@contextmanager
def hub_errors(what: str, repo_id: str, download_command: str, instead: str, local_files_only: bool) -> Iterator[None]:
    """Turn huggingface_hub's errors into one `Flux2Int8Error` that says how to get the files.

    Subclasses come first: a gated repository is also 'not found', a missing cache
    entry is also an `EntryNotFoundError`.
    """
    try:
        yield
    except GatedRepoError:
        raise Flux2Int8Error(f"{what} is gated on the Hugging Face hub: accept its license at https://huggingface.co/{repo_id}, log in with `hf auth login`, and retry") from None
    except RepositoryNotFoundError:
        raise Flux2Int8Error(f"{what}: there is no repository '{repo_id}' on the Hugging Face hub (or it is private and you are not logged in); check the name") from None
    except RevisionNotFoundError as error:
        raise Flux2Int8Error(f"{what}: revision not found on the hub ({error})") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise Flux2Int8Error(_not_cached_message(what, download_command, instead, local_files_only)) from None
    except EntryNotFoundError:
        raise Flux2Int8Error(f"{what}: the repository '{repo_id}' has no such file; check the name against https://huggingface.co/{repo_id}/tree/main") from None
    except HFValidationError as error:
        raise Flux2Int8Error(f"{what}: not a valid hub name ({error})") from None
    except HfHubHTTPError as error:
        raise Flux2Int8Error(f"{what}: the Hugging Face hub answered with an error ({error})") from None


def _not_cached_message(what: str, download_command: str, instead: str, local_files_only: bool) -> str:
    if local_files_only:
        reason = "local files only were asked for"
    elif constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        reason = "the hub cannot be reached"
    return (
        f"{what} is not (fully) in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {reason}. "
        f"Fetch it on a machine with internet with `{download_command}` and copy that machine's cache here "
        f"(or point HF_HOME at a copy), or {instead}"
    )
