"""Ray Data batch jobs: read documents from object storage, run routed inference, write Parquet.

`qwen-cluster batch` (cli.py) runs `job.run_batch_job`; the stages live in stages.py and inference.py.
"""
