"""encode: each distinct query once through the sentence encoder; histories as table indices."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from searchrec import config


@dsl.component(base_image=config.image("encode"), install_kfp_package=False)
def encode(
    examples: Input[Dataset],
    encoded: Output[Dataset],
    encoder: str = "cointegrated/rubert-tiny2",  # config.PRODUCTION_ENCODER_ID
    pooling: str = "cls",  # config.PRODUCTION_ENCODER_POOLING
    batch_size: int = 512,
):
    """`encoder`: an HF id, a local folder or an s3:// / gs:// folder of from_pretrained weights."""
    from pathlib import Path

    from searchrec.encoder import EncoderSpec
    from searchrec.runtime import lineage, stage
    from searchrec.stages.encode import encode_histories

    with stage("encode"):
        spec = EncoderSpec(name_or_path=encoder, pooling=pooling)
        stats = encode_histories(Path(examples.path), spec, Path(encoded.path), batch_size=batch_size)
        encoded.metadata.update(lineage(**stats.as_metadata()))
