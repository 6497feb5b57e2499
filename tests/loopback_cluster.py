"""Run a two-node Ray cluster on loopback until stdin closes; print its address first.

``ray start --address 127.0.0.1:PORT`` resolves loopback to the machine's network address,
so the second node is added with Ray's own ``ray.cluster_utils.Cluster`` (real raylets, one
CPU each), with cluster networking kept on 127.0.0.1.
"""

import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from ray.cluster_utils import Cluster  # noqa: E402

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
