"""Lambda composition root for the DICOMweb rendered and thumbnail resources: build once at cold
start, then serve."""

from dicomweb_server.aws.api import api_handler

handler = api_handler("render")
