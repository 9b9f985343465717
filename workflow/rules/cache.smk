# Stage 4: entropy-code every split (and extra dataset) with every codec; cache bitstreams, y_hat and sigma_hat.


rule cache_latents:
    input:
        unpack(dataset_inputs),
        model=RESULTS + "/codecs/" + CODEC + "/model.pt",
    output:
        directory(RESULTS + "/cache/" + CODEC + "/{dataset}"),
    params:
        section=as_json({key: value for key, value in config["cache"].items() if key != "splits"}),
        source=dataset_args,
        latents=lambda wc: "" if wc.dataset in SPLITS else "--no-latents",
    log:
        RESULTS + "/logs/cache_latents/" + CODEC + "/{dataset}.log",
    benchmark:
        RESULTS + "/benchmarks/cache_latents/" + CODEC + "/{dataset}.tsv"
    shell:
        "python -m taskcodec.stages.cache_latents --params {params.section:q} --threads {threads} --rule {rule}"
        " --model {input.model:q} {params.source} {params.latents} --out {output:q} > {log:q} 2>&1"
