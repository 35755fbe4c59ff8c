"""Ledger bodies as agi/handlers/consent.py and revoke.py wrote them before the typed
contracts (storage/entries.py) existed: canonical JSON as stored and hashed, captured
with the fixed clock and ids of tests/agi/test_consent_handler.py (which checks that
the handlers still write exactly these).
"""

HMAC = "ab" * 32

GRANTED = (
    '{"attempts":1,"caller_hmac":"' + HMAC + '","channel":"Local/100@lab-0001;2",'
    '"consent_id":"c000000000000000000000001","did":"27215550100","digits":"1","ended_at":1700000001.25,'
    '"jurisdiction":"ZA","language":"en","linkedid":"1795329357.6","mode":"opt-in",'
    '"notice":"callvault/en/notice-opt-in","outcome":"granted","reason":"pressed-allow","record":true,'
    '"recording_id":"r000000000000000000000002","rule":"za","started_at":1700000000.25,"uniqueid":"1795329357.7"}')
DECLINED = (
    '{"attempts":1,"caller_hmac":"' + HMAC + '","channel":"Local/100@lab-0001;2",'
    '"consent_id":"c000000000000000000000003","did":"27215550100","digits":"2","ended_at":1700000004.25,'
    '"jurisdiction":"ZA","language":"en","linkedid":"1795329357.6","mode":"opt-in",'
    '"notice":"callvault/en/notice-opt-in","outcome":"declined","reason":"pressed-refuse","record":false,'
    '"recording_id":null,"rule":"za","started_at":1700000003.25,"uniqueid":"1795329357.7"}')
ABANDONED = (
    '{"caller_hmac":"' + HMAC + '","channel":"Local/100@lab-0001;2","consent_id":"c000000000000000000000004",'
    '"did":"27215550100","ended_at":1700000006.25,"jurisdiction":"ZA","language":"en","linkedid":"1795329357.6",'
    '"mode":"opt-in","notice":"callvault/en/notice-opt-in","outcome":"abandoned","reason":"hangup-during-notice",'
    '"record":false,"rule":"za","started_at":1700000005.25,"uniqueid":"1795329357.7"}')
IMPLIED = (
    '{"attempts":1,"caller_hmac":"' + HMAC + '","channel":"Local/100@lab-0001;2",'
    '"consent_id":"c000000000000000000000005","did":"27215550100","digits":"","ended_at":1700000008.25,'
    '"jurisdiction":"ZA","language":"en","linkedid":"1795329357.6","mode":"opt-out",'
    '"notice":"callvault/en/notice-opt-out","outcome":"implied","reason":"no-objection","record":true,'
    '"recording_id":"r000000000000000000000006","rule":"za","started_at":1700000007.25,"uniqueid":"1795329357.7"}')
REVOKE = ('{"action":"stop-and-erase","at":1700000010.25,"by_channel":"Local/100@lab-0001;2",'
          '"linkedid":"1795329357.6","not_stopped":[],"recording_ids":["r000000000000000000000001"],'
          '"stopped":["r000000000000000000000001"]}')
PAUSE = '{"actor":"alice","at":1700000011.5,"channel":"PJSIP/1001-00000001","recording_id":"r1"}'
