# Stage 4: entropy-code every split (and extra dataset) with every codec; cache bitstreams, y_hat and sigma_hat.
#
# Job group "coding": the caches and evaluations of learned codecs (also of the fine-tuned ones, finetune.smk) are
# small jobs, each paying seconds of interpreter and import start-up. On a cluster an evaluation runs in one
# submission with the cache it reads, and `--group-components coding=<n>` (a cluster profile's setting) batches n
# such chains, e.g. the per-split caches of a codec, into one submission. A local run ignores groups.


rule cache_latents:
    input:
        unpack(dataset_inputs),
        model=results("codecs", CODEC, "model.pt"),
    output:
        directory(results("cache", CODEC, "{dataset}")),
    params:
        section=as_json({key: value for key, value in config["cache"].items() if key != "splits"}),
        source=dataset_args,
        latents=lambda wc: "" if wc.dataset in SPLITS else "--no-latents",
        rule="cache_latents",
    threads: job_threads("cache_latents")
    resources:
        **job_resources("cache_latents"),
    group:
        "coding"
    log:
        results("logs", "cache_latents", CODEC, "{dataset}.log"),
    benchmark:
        results("benchmarks", "cache_latents", CODEC, "{dataset}.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.cache_latents --params {params.section:q} --threads {threads}"
        " --device {resources.device:q} --rule {params.rule} --model {input.model:q} {params.source} {params.latents}"
        " --out {output:q} > {log:q} 2>&1"
