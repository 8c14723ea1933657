"""Cluster settings of a pipeline task: resources, accelerators, retries, caching and secrets.

Every task of every pipeline goes through `configure()`, so what a platform team sets once
(config.py: resources, accelerator type, Secret names) lands in the compiled YAML the same way
everywhere. kfp.local ignores all of it except retries, which local runs leave out (config.LOCAL_RUN_ENV);
Kubeflow Pipelines and Vertex AI Pipelines apply it.
"""

from __future__ import annotations

import os
from typing import TypeVar

from kfp import kubernetes
from kfp.dsl import PipelineTask

from searchrec import config

T = TypeVar("T", bound=PipelineTask)

# Retries of tasks that talk to networks (warehouse, object storage): transient failures of a
# remote service should not fail a nightly run, but a wrong query must not be retried forever.
NETWORK_RETRIES = 3
NETWORK_BACKOFF = "60s"
NETWORK_BACKOFF_FACTOR = 2.0
NETWORK_BACKOFF_MAX = "1800s"

# Stages whose results depend on the warehouse's current contents: never served from the cache.
UNCACHED_STAGES = frozenset({"extract"})
# Stages that read the warehouse and so need its credentials.
WAREHOUSE_STAGES = frozenset({"extract"})


def configure(
    task: T,
    stage: str,
    *,
    touches_network: bool = False,
    cache: bool = True,
    reads_warehouse: bool | None = None,
) -> T:
    """Apply the stage's requests and limits, accelerator, retry policy, caching and secrets to `task`.

    touches_network: the task reads or writes object storage (s3://, gs://) or another remote service:
        it gets retries with exponential backoff and the object-storage credentials.
    cache: False turns the KFP cache off for this task; extract tasks are never cached.
    reads_warehouse: the task gets the warehouse login; None: the stage's tasks do (extract). A small task
        that runs in a stage's image for its clients only (resolve_model: object storage) says False.

    Platform-specific settings come from config.platform(): the target of this compilation
    ($SEARCHREC_PLATFORM, set by `searchrec compile --platform`). On Vertex AI the Kubernetes settings
    (Secrets, node selector, tolerations) are left out: it takes a single-document spec.
    """
    target = config.platform()
    kubernetes_settings = target.kubernetes_secrets
    if stage not in config.STAGE_RESOURCES:
        from searchrec.errors import SearchrecError

        raise SearchrecError(f"unknown stage {stage!r}; expected one of {', '.join(config.STAGE_RESOURCES)}")
    resources = config.STAGE_RESOURCES[stage]
    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory)
    if resources.gpus:
        _request_gpus(task, resources.gpus, target)

    reads_warehouse = stage in WAREHOUSE_STAGES if reads_warehouse is None else reads_warehouse
    touches_network = touches_network or reads_warehouse
    if touches_network and not os.environ.get(config.LOCAL_RUN_ENV):
        task.set_retry(
            num_retries=NETWORK_RETRIES,
            backoff_duration=NETWORK_BACKOFF,
            backoff_factor=NETWORK_BACKOFF_FACTOR,
            backoff_max_duration=NETWORK_BACKOFF_MAX,
        )
    task.set_caching_options(cache and stage not in UNCACHED_STAGES)

    # Credentials reach the pod as environment variables from Kubernetes Secrets: the YAML holds only
    # the Secret's name and keys, never a value.
    if kubernetes_settings and reads_warehouse:
        kubernetes.use_secret_as_env(
            task, secret_name=config.WAREHOUSE_SECRET, secret_key_to_env=dict(config.WAREHOUSE_SECRET_ENV)
        )
    if kubernetes_settings and touches_network:
        # Optional: with workload identity (GKE) or IRSA (EKS) there is no key Secret at all.
        kubernetes.use_secret_as_env(
            task,
            secret_name=config.STORAGE_SECRET,
            secret_key_to_env=dict(config.STORAGE_SECRET_ENV),
            optional=True,
        )
    return task


def _request_gpus(task: PipelineTask, count: int, target: config.PlatformSettings) -> None:
    """The platform's accelerator name; on KFP also the GPU pool's node selector and taint toleration."""
    task.set_accelerator_type(target.gpu_accelerator).set_accelerator_limit(count)
    selector = target.node_selector()
    if selector:
        kubernetes.add_node_selector(task, label_key=selector[0], label_value=selector[1])
    if target.gpu_toleration_key:
        # GPU node pools are usually tainted; a GPU task must tolerate that taint to be scheduled.
        kubernetes.add_toleration(task, key=target.gpu_toleration_key, operator="Exists", effect="NoSchedule")
