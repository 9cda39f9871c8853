"""flwr-simulation for Pollen's SIMULATION federations: Flower's own, with Ray kept to the job.

Flower's Simulation Engine starts Ray with `ray.init(num_cpus=..., include_dashboard=False)`.
Left like that, Ray would keep its session files under /tmp/ray and size its object store at 30%
of the machine's memory. Every `ray.init` here also gets the job's own temporary directory
(POLLEN_RAY_TEMP_DIR) and an object store of POLLEN_RAY_OBJECT_STORE_BYTES. Where Ray listens
is set by the environment Pollen gives the federation (a loopback-only cluster, sockets bound to
loopback: see local-federation.ts). Pollen runs this in place of `flwr-simulation` (first on the
SuperLink's PATH, see simulation-bin/flwr-simulation); everything else is the unchanged command.
"""

import os
import sys

import ray

_ray_init = ray.init


def _init_for_the_job(*args, **kwargs):
    kwargs["_temp_dir"] = os.environ["POLLEN_RAY_TEMP_DIR"]
    kwargs["include_dashboard"] = False
    kwargs["object_store_memory"] = int(os.environ["POLLEN_RAY_OBJECT_STORE_BYTES"])
    return _ray_init(*args, **kwargs)


ray.init = _init_for_the_job

if __name__ == "__main__":
    from flwr.simulation.app import flwr_simulation

    sys.argv[0] = "flwr-simulation"
    sys.exit(flwr_simulation())
