"""Every HTTP request a product S3 client sends is counted by operation, retries
included (``storage.s3client.REQUESTS``, exported as ``callvault_s3_requests_total``):
the figure behind "requests per archived recording"."""

from __future__ import annotations

import http.server
import io
import threading
import tracemalloc

import pytest
from blobhelpers import MiB, sha

from storage.errors import RetryableError
from storage.s3client import REQUESTS
from storage.s3store import S3Settings, S3Store

pytestmark = pytest.mark.s3


def delta(before: dict[str, int]) -> dict[str, int]:
    after = REQUESTS.snapshot()
    return {op: n - before.get(op, 0) for op, n in after.items() if n != before.get(op, 0)}


def test_single_and_multipart_puts_and_heads_are_counted_by_operation(make_s3_store):
    store = make_s3_store()
    small, big = b"x" * 1000, bytes(range(256)) * (72 * 1024)  # 18 MiB: three 8 MiB parts
    before = REQUESTS.snapshot()
    store.put("r/small", small, sha256=sha(small))
    store.head("r/small", tags=False)
    assert delta(before) == {"PutObject": 1, "HeadObject": 1}

    before = REQUESTS.snapshot()
    store.put("r/big", io.BytesIO(big), size=len(big), sha256=sha(big))
    # The whole object's SHA-256 as a tag once complete, as for a streamed upload.
    assert delta(before) == {"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1,
                             "PutObjectTagging": 1}


def test_retries_are_requests_too(s3_settings):
    """A service that answers 503 is asked again: each attempt is one request
    (botocore's ``max_attempts`` counts the retries after the first request)."""
    class Busy(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = S3Settings(endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", region="us-east-1",
                              access_key_id="k", secret_access_key="s", addressing_style="path",
                              max_attempts=2, connect_timeout=2, read_timeout=2)
        with S3Store(settings, "busy", object_lock=False) as store:
            before = REQUESTS.snapshot()
            with pytest.raises(RetryableError):
                store.head("r/x", tags=False)
            assert delta(before) == {"HeadObject": 1 + 2}
    finally:
        server.shutdown()
        server.server_close()


def test_a_small_put_costs_its_own_size_in_memory_not_a_parts(make_s3_store):
    """A recording's header or manifest (a few hundred bytes to a few KB) used to be
    read into a zero-filled 8 MiB part buffer: 5 ms of CPU per PUT."""
    store = make_s3_store()
    data = b"h" * 4000
    store.put("r/warm", data, sha256=sha(data))  # botocore's own first-use allocations
    for source in (lambda: data, lambda: io.BytesIO(data)):
        tracemalloc.start()
        try:
            store.put("r/small", source(), size=len(data), sha256=sha(data))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MiB, peak
