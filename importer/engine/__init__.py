"""The import engine: runs a connector's ``fetch`` into the Pod, exactly once."""

from ._lock import RunLocked
from ._run import EngineSettings, ImportFailed, RunResult, run_import
from ._stats import RunStats

__all__ = ["EngineSettings", "ImportFailed", "RunLocked", "RunResult", "RunStats", "run_import"]
