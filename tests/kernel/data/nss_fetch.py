"""GET one URL with libcurl's NSS build (Debian's libcurl3-nss: its TLS is NSS, its I/O NSPR's
PR_Send/PR_Recv), certificate checks off; the body on stdout. sslsniff's NSS test runs it."""
import ctypes
import sys

CURLOPT_URL, CURLOPT_WRITEFUNCTION, CURLOPT_SSL_VERIFYPEER, CURLOPT_SSL_VERIFYHOST = 10002, 20011, 64, 81
WRITE = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p)


def main(url: str) -> int:
    curl = ctypes.CDLL("libcurl-nss.so.4")
    curl.curl_easy_init.restype = ctypes.c_void_p
    curl.curl_easy_setopt.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    curl.curl_easy_perform.argtypes = [ctypes.c_void_p]
    curl.curl_easy_strerror.restype = ctypes.c_char_p
    body = []

    def on_data(ptr, size, n, _):
        body.append(ctypes.string_at(ptr, size * n))
        return size * n

    on_data_c = WRITE(on_data)
    handle = curl.curl_easy_init()
    curl.curl_easy_setopt(handle, CURLOPT_URL, ctypes.c_char_p(url.encode()))
    curl.curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, ctypes.cast(on_data_c, ctypes.c_void_p))
    curl.curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, None)
    curl.curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, None)
    rc = curl.curl_easy_perform(handle)
    if rc != 0:
        print(curl.curl_easy_strerror(rc).decode(), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(b"".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
