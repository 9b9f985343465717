# Stage 2a: per-image saliency maps of the prepared data (spectral residual), with a viewable grid.


rule saliency:
    input:
        prepared=RESULTS + "/prepared",
    output:
        report(
            directory(RESULTS + "/saliency"),
            patterns=["grid.png"],
            caption="../report/saliency.rst",
            category="Saliency",
        ),
    params:
        section=as_json(config["saliency"]),
    log:
        RESULTS + "/logs/saliency.log",
    benchmark:
        RESULTS + "/benchmarks/saliency.tsv"
    shell:
        "python -m taskcodec.stages.saliency --params {params.section:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
