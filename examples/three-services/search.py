"""The private `search` service, which nobody may invoke until the configuration says so."""

from common import serve


def answer(request):
    return 200, {"service": "search", "results": ["a", "b"]}


if __name__ == "__main__":
    serve(answer)
