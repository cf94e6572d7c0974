-- IKE and ESP in one TCP stream (RFC 9329) for tshark 4.0, which has no dissector of its own
-- for it (its "tcpencap" is Cisco's older format). A test oracle: it cuts the stream with
-- Wireshark's own TCP reassembly and hands each frame to Wireshark's isakmp and esp dissectors.
--   tshark -X lua_script:tests/data/rfc9329.lua -r capture.pcap -Y isakmp
--   tshark -X lua_script:tests/data/rfc9329.lua -d tcp.port==443,rfc9329 -r capture.pcap
local proto = Proto("rfc9329", "IKE and ESP in TCP (RFC 9329)")
local f_prefix = ProtoField.string("rfc9329.prefix", "Stream prefix")
local f_length = ProtoField.uint16("rfc9329.length", "Length")
local f_marker = ProtoField.uint32("rfc9329.marker", "Non-ESP marker", base.HEX)
local f_keepalive = ProtoField.uint8("rfc9329.keepalive", "NAT keepalive", base.HEX)
proto.fields = {f_prefix, f_length, f_marker, f_keepalive}
local tcp_seq = Field.new("tcp.seq")
local isakmp = Dissector.get("isakmp")
local esp = Dissector.get("esp")

local function frame(tvb, pinfo, tree)
    local length = tvb(0, 2):uint()
    local item = tree:add(proto, tvb(0, length))
    item:add(f_length, tvb(0, 2))
    if length == 3 and tvb(2, 1):uint() == 0xff then            -- RFC 9329 §6.6
        item:add(f_keepalive, tvb(2, 1))
    elseif length >= 6 and tvb(2, 4):uint() == 0 then           -- RFC 9329 §3.1
        item:add(f_marker, tvb(2, 4))
        isakmp:call(tvb(6, length - 6):tvb(), pinfo, tree)
    else                                                        -- RFC 9329 §3.2
        esp:call(tvb(2, length - 2):tvb(), pinfo, tree)
    end
end

function proto.dissector(tvb, pinfo, tree)
    local offset, size = 0, tvb:len()
    local seq = tcp_seq()
    -- RFC 9329 §4: the initiator's direction starts with "IKETCP" (relative sequence number 1)
    if seq ~= nil and seq.value == 1 and size >= 6 and tvb(0, 6):string() == "IKETCP" then
        tree:add(proto, tvb(0, 6)):add(f_prefix, tvb(0, 6))
        offset = 6
    end
    while offset < size do
        if size - offset < 2 then
            pinfo.desegment_offset, pinfo.desegment_len = offset, DESEGMENT_ONE_MORE_SEGMENT
            return size
        end
        local length = tvb(offset, 2):uint()
        if length < 3 then return offset end                    -- RFC 9329 §3: the length counts itself
        if size - offset < length then
            pinfo.desegment_offset, pinfo.desegment_len = offset, length - (size - offset)
            return size
        end
        frame(tvb(offset, length):tvb(), pinfo, tree)
        offset = offset + length
    end
    pinfo.cols.protocol = "RFC9329"
    return size
end

DissectorTable.get("tcp.port"):add(4500, proto)
DissectorTable.get("tcp.port"):add_for_decode_as(proto)   -- -d tcp.port==443,rfc9329
