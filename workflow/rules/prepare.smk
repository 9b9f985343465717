# Stage 1: ingest the dataset, resize/crop, split, write the manifest.


rule prepare:
    input:
        # an image folder's files, so that changed data reruns prepare
        images=lambda wc: folder_files(config["prepare"]["root"]) if config["prepare"]["dataset"] == "imagefolder" else [],
    output:
        directory(RESULTS + "/prepared"),
    params:
        section=as_json(config["prepare"]),
    log:
        RESULTS + "/logs/prepare.log",
    benchmark:
        RESULTS + "/benchmarks/prepare.tsv"
    shell:
        "python -m taskcodec.stages.prepare --params {params.section:q} --out {output:q} > {log:q} 2>&1"
