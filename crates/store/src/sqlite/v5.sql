-- Version 5: every live name in Unicode NFC, the form the store now keeps names in. Names
-- written before are renamed by `normalize_names` in the same transaction (SQL cannot
-- normalize Unicode).
SELECT 1;
