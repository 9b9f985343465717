# Stage 2a: per-image saliency maps of the prepared data (spectral residual), with a viewable grid.


rule saliency:
    input:
        prepared=results("prepared"),
    output:
        report(
            directory(results("saliency")),
            patterns=["grid.png"],
            caption="../report/saliency.rst",
            category="Saliency",
        ),
    params:
        section=as_json(config["saliency"]),
    log:
        results("logs", "saliency.log"),
    benchmark:
        results("benchmarks", "saliency.tsv")
    conda:
        CONDA_ENV
    shell:
        "python -m taskcodec.stages.saliency --params {params.section:q}"
        " --manifest {input.prepared:q}/manifest.csv --out {output:q} > {log:q} 2>&1"
