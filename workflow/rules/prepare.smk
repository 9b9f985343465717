# Stage 1: ingest the dataset, resize/crop, split, write the manifest.


rule prepare:
    input:
        images=prepare_inputs,  # an image folder's files, so that changed data reruns prepare
    output:
        directory(results("prepared")),
    params:
        section=as_json(config["prepare"]),
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    log:
        results("logs", "prepare.log"),
    benchmark:
        results("benchmarks", "prepare.tsv")
    conda:
        CONDA_ENV
    shell:
        ("python -m taskcodec.stages.prepare --params {params.section:q} --threads {threads} --out {output:q} "
         "> {log:q} 2>&1")
