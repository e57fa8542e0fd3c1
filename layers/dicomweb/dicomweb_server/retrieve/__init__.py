"""WADO-RS and WADO-URI (PS3.18 §10.4, §9): content negotiation (``negotiation``), instances and
transcoding (``instances``), metadata (``metadata``), frames (``frames``), rendering (``render``),
WADO-URI parameters (``wado_uri``) and the one large-response rule (``size_policy``).

Pixel codecs (numpy, Pillow, pylibjpeg) are imported lazily inside ``render`` and ``frames``."""
