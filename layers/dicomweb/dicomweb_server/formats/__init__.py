"""Wire formats, with no knowledge of storage or HTTP frameworks: media types and Accept parsing
(RFC 9110, PS3.18 §8.7), ``multipart/related`` (RFC 2387), the DICOM JSON model (PS3.18 Annex F),
the Native DICOM Model XML (PS3.19 Annex A) and JPEG frame headers (ITU T.81)."""
