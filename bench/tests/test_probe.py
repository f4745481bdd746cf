"""Unit tests of highpress_bench.probe's Access: how the harness's HTTP reads carry a bearer
token (api.auth) and trust a run's CA for https URLs (server.tls). No network: urlopen is
replaced by a recorder."""

import ssl
import unittest
from unittest import mock

from highpress_bench import probe


class FakeResponse:
    status = 200

    def __init__(self, body=b"ok"):
        self.body = body

    def read(self):
        return self.body

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class AccessTest(unittest.TestCase):
    def opened(self, access, url, body=b"ok", **kw):
        """The request and context urlopen got for one access.open(url)."""
        with mock.patch("urllib.request.urlopen", return_value=FakeResponse(body)) as urlopen:
            with access.open(url, timeout=2, **kw) as r:
                self.assertEqual(r.read(), body)
        (request,), kwargs = urlopen.call_args
        return request, kwargs

    def test_the_token_goes_as_a_bearer_header_and_nothing_without_one(self):
        request, kwargs = self.opened(probe.Access("0123abcd", None), "http://127.0.0.1:1/x")
        self.assertEqual(request.get_header("Authorization"), "Bearer 0123abcd")
        self.assertIsNone(kwargs["context"])
        request, _ = self.opened(probe.PLAIN, "http://127.0.0.1:1/x")
        self.assertFalse(request.has_header("Authorization"))

    def test_https_gets_a_verifying_context_and_keeps_the_other_headers(self):
        with mock.patch("ssl.create_default_context") as make:
            make.return_value = mock.sentinel.context
            request, kwargs = self.opened(
                probe.Access("t", "/run/ca.crt"), "https://127.0.0.1:1/api/v1/counter/batch",
                data=b"{}", headers={"Content-Type": "application/json"})
        make.assert_called_once_with(cafile="/run/ca.crt")
        self.assertIs(kwargs["context"], mock.sentinel.context)
        self.assertEqual(request.get_header("Content-type"), "application/json")
        self.assertEqual(request.get_header("Authorization"), "Bearer t")
        self.assertEqual(request.data, b"{}")

    def test_the_default_context_checks_certificates_and_names(self):
        context = probe.Access(None, None).context()
        self.assertEqual(context.verify_mode, ssl.CERT_REQUIRED)
        self.assertTrue(context.check_hostname)

    def test_reads_pass_the_access_on(self):
        access = probe.Access("t", None)
        text = "highpress_increments_acknowledged_total 5\n"
        with mock.patch("urllib.request.urlopen",
                        return_value=FakeResponse(text.encode())) as urlopen:
            sums = probe.scrape("http://127.0.0.1:1/metrics",
                                ("highpress_increments_acknowledged",
                                 "highpress_rate_limited"), access)
        self.assertEqual(sums, {"highpress_increments_acknowledged": 5.0,
                                "highpress_rate_limited": None})
        self.assertEqual(urlopen.call_args[0][0].get_header("Authorization"), "Bearer t")


if __name__ == "__main__":
    unittest.main()
