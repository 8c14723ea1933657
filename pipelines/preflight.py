"""Preflight pipeline: the first run on a new cluster. One task per stage image, with that stage's settings."""

from kfp import dsl

from components.preflight import (
    preflight_clean,
    preflight_encode,
    preflight_extract,
    preflight_index,
    preflight_infer,
    preflight_report,
    preflight_train,
)
from pipelines.cluster import configure
from pipelines.common import PRODUCTION, PRODUCTION_WAREHOUSE_SECRET, import_encoder
from searchrec import config


@dsl.pipeline(
    name="searchrec-preflight",
    description="Checks every stage image against this cluster: warehouse, embeddings, encoder, GPUs, pipeline root.",
)
def preflight(
    date: str,
    warehouse_uri: str = PRODUCTION.warehouse_uri,
    embeddings_uri: str = PRODUCTION.embeddings_uri,
    warehouse_secret: str = PRODUCTION_WAREHOUSE_SECRET,
    snapshot_max_days: int = config.SNAPSHOT_MAX_DAYS,
    encoder: str = PRODUCTION.encoder,
    require_encoder_manifest: bool = True,
    allow_no_gpu: bool = False,
):
    encoder_model = import_encoder(encoder)
    # the same stage settings as the real tasks: extract reads the warehouse and buckets, encode a bucket
    extract = configure(
        preflight_extract(
            warehouse_uri=warehouse_uri,
            embeddings_uri=embeddings_uri,
            date=date,
            warehouse_secret=warehouse_secret,
            snapshot_max_days=snapshot_max_days,
        ),
        "extract",
        touches_network=True,
        cache=False,
    )
    clean = configure(preflight_clean(probe=extract.outputs["probe"]), "clean", cache=False)
    encode = configure(
        preflight_encode(
            encoder=encoder_model.output, allow_no_gpu=allow_no_gpu, require_manifest=require_encoder_manifest
        ),
        "encode",
        touches_network=True,
        cache=False,
    )
    train = configure(preflight_train(allow_no_gpu=allow_no_gpu), "train", cache=False)
    index = configure(preflight_index(allow_no_gpu=allow_no_gpu), "index", cache=False)
    infer = configure(preflight_infer(allow_no_gpu=allow_no_gpu), "infer", cache=False)
    reports = {
        name: task.outputs["report"]
        for name, task in dict(
            extract=extract, clean=clean, encode=encode, train=train, index=index, infer=infer
        ).items()
    }
    configure(preflight_report(**reports), "clean", cache=False).set_display_name("preflight report")
