"""The launcher's config: hydra-joblib-launcher's options and defaults, under its own name.

It is stored as `hydra/launcher=sweeps_joblib`, a name no other plugin uses, so installing this
package changes nothing for other Hydra apps: their `hydra/launcher=joblib` stays the stock
launcher. In this app, `hydra/launcher=joblib` runs it: the sweep callback swaps the stock
launcher's `_target_` for ours (src/sweep/callback.py, `use_our_launchers`).
No `from __future__ import annotations`: Hydra's plugin scan executes this module before it is
in sys.modules, and dataclasses cannot resolve string annotations then.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf


@dataclass
class SweepsJoblibLauncherConf(JobLibLauncherConf):
    """hydra-joblib-launcher's options and defaults, for this launcher."""

    _target_: str = "hydra_plugins.sweeps_joblib_launcher.joblib_launcher.SweepsJoblibLauncher"


ConfigStore.instance().store(
    group="hydra/launcher",
    name="sweeps_joblib",
    node=SweepsJoblibLauncherConf,
    provider="mlflow-hydra-sweeps",
)
