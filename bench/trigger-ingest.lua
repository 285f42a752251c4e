-- wrk script for bench/trigger-ingest.sh: POSTs one order event per request to the
-- trigger event URL given on the command line, with the trigger's secret.
wrk.method = "POST"
wrk.body = '{"event":"order_created","order_id":"12345","amount":149.99,"items":["SKU-001","SKU-042"],"shipping_address":"123 Main St, Anytown, USA"}'
wrk.headers["Content-Type"] = "application/json"
local secret = os.getenv("TRIGGER_SECRET")
if secret and secret ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. secret
end
