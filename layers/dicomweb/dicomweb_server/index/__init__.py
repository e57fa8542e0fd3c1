"""The ``MetadataIndex`` port's implementations: the DynamoDB key layout (``keys``), which key a
search drives on (``plan``), the DynamoDB index (``dynamodb``) and its in-memory twin (``memory``).
One contract suite (tests/unit/test_contract.py) runs against both."""
