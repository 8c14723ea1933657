"""encode: each distinct query once through the sentence encoder; histories as table indices."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from searchrec import config


@dsl.component(base_image=config.image("encode"), install_kfp_package=False)
def encode(
    examples: Input[Dataset],
    encoder: Input[Model],
    encoded: Output[Dataset],
    pooling: str = "cls",  # config.PRODUCTION_ENCODER_POOLING
    batch_size: int = 512,  # config.ENCODE_BATCH_SIZE
):
    """`encoder` enters through dsl.importer (lineage): its URI is an HF id, a local folder or an s3:// / gs://
    folder of from_pretrained weights. Where the launcher has already fetched a bucket folder, that copy is used."""
    from pathlib import Path

    from searchrec.encoder import EncoderSpec
    from searchrec.runtime import lineage, stage
    from searchrec.stages.encode import encode_histories

    with stage("encode", encoder=encoder.uri):
        fetched = Path(encoder.path) if encoder.path else None
        source = str(fetched) if fetched is not None and fetched.is_dir() else encoder.uri
        spec = EncoderSpec(name_or_path=source, pooling=pooling)
        stats = encode_histories(Path(examples.path), spec, Path(encoded.path), batch_size=batch_size)
        encoded.metadata.update(lineage(**stats.as_metadata()))
