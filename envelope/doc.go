// Package envelope holds the rules of envelope.v1.ProcessedEnvelope that every Ponix adapter
// shares, in one place:
//
//   - reading the protobuf wire format without decoding into a message ([Wire.Parse]): the
//     ids and timestamps are read in place and nothing is allocated;
//   - validation ([Validate] for a decoded envelope, [Wire.Validate] for one read from the
//     wire, [ValidateWire] for its bytes: one set of rules, the same [*ValidationError]), so
//     that an encoder parses, validates and encodes an envelope from one read of its bytes;
//   - the NATS subject of an envelope ([Subject], [ValidSubjectToken]) and its default
//     de-duplication id ([MsgID]);
//   - the JSON of its data field ([DataJSON]), from a decoded Struct or from its wire bytes,
//     byte for byte what encoding/json makes of Struct.AsMap.
//
// Its errors name the field ([*FieldError], the one field error of Ponix, or a
// [*ValidationError]) and carry the reason a pipeline dead-letters a message for them
// (DeadLetterReason: "decode" for [ErrMalformed], "invalid" for [ErrInvalid]).
//
// ponixnats (the NATS producer and processors) and ponixclickhouse (the row encoder) use it;
// neither parses the wire format itself.
package envelope
