// Checks Adaptive Cards the way a client that supports a given schema
// version reads them: the official library's parser, told the target
// version, reports every element or action it does not know at that
// version (newer ones included) and every invalid property.
//
// Usage: node check-card.js VERSION < payloads.jsonl
// Each input line is a Teams Workflows payload ({"type": "message",
// "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
// "content": CARD}]}). Prints one JSON line per payload: the problems found.
const AC = require("adaptivecards/dist/adaptivecards.js");
const readline = require("readline");

const versions = { "1.2": AC.Versions.v1_2, "1.3": AC.Versions.v1_3, "1.4": AC.Versions.v1_4, "1.5": AC.Versions.v1_5 };
const target = versions[process.argv[2]];
if (!target) {
  console.error(`usage: node check-card.js {${Object.keys(versions).join(",")}} < payloads.jsonl`);
  process.exit(2);
}

function problems(payload) {
  const found = [];
  if (payload.type !== "message") found.push(`payload type is ${payload.type}, not message`);
  const attachments = payload.attachments || [];
  if (attachments.length !== 1) found.push(`${attachments.length} attachments, not 1`);
  for (const a of attachments) {
    if (a.contentType !== "application/vnd.microsoft.card.adaptive") found.push(`contentType ${a.contentType}`);
    const card = a.content || {};
    if (card.type !== "AdaptiveCard") found.push(`card type ${card.type}`);
    const declared = AC.Version.parse(card.version, new AC.SerializationContext());
    if (!declared || declared.major !== target.major || declared.minor > target.minor) {
      found.push(`card version ${card.version} is not within ${target.toString()}`);
    }
    const context = new AC.SerializationContext(target);
    const parsed = new AC.AdaptiveCard();
    parsed.parse(card, context);
    for (let i = 0; i < context.eventCount; i++) found.push(context.getEventAt(i).message);
    for (const e of parsed.validateProperties().validationEvents) found.push(e.message);
  }
  return found;
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim()) console.log(JSON.stringify(problems(JSON.parse(line))));
});
