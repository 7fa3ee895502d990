"""Async jobs: ``POST /v1/jobs`` scores many memes in the background and calls a webhook when done.

``store.py`` reads and writes the jobs' tables (service/store/jobs_schema.py) with leases, so one
worker holds a job at a time and a crashed one's job is taken over; ``sources.py`` turns a request
(inline items or an allowed server-side path) into items; ``scorer.py`` scores a chunk with the
batch scorer; ``worker.py`` is the background thread of each gateway process; ``webhooks.py`` signs,
checks and sends the result notice; ``routes.py`` is the HTTP API and ``results.py`` its JSON Lines
and Parquet output.
"""
