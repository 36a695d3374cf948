from tests.conftest import Live


async def test_submit_wait_decide(live: Live) -> None:
    req = await live.submit()
    assert req["status"] == "pending"
    status, out = await live.call("POST", f"/v1/requests/{req['id']}/decision", token=live.reviewer_token,
                                  json={"decision": "approve", "reviewer": {"id": "U1", "name": "Dana"}})
    assert status == 200, out
    status, out = await live.call("GET", f"/v1/requests/{req['id']}/wait?timeout_s=1")
    assert out["status"] == "approved"
    assert out["decision"]["by"] == {"id": "U1", "name": "Dana", "via": "api"}
