// The Vercel AI SDK's default openai() model (the Responses API) against the gateway.
//
// Run by tests/test_ai_sdk.py with OPENAI_BASE_URL and OPENAI_API_KEY pointing at the real
// gateway and MODEL naming the model (so the channel) to use. It makes each kind of call
// the SDK offers and prints what came back as one JSON line; the Python test judges it.
import { openai } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const model = openai(process.env.MODEL);

const weather = tool({
  description: "Weather in a city.",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => `sunny in ${city}`,
});

// The first step must call the tool, the second must answer with its result.
const toolSteps = {
  tools: { get_weather: weather },
  stopWhen: stepCountIs(2),
  prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
};

function steps(result) {
  return result.steps.map((step) => ({
    toolCalls: step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })),
    toolResults: step.toolResults.map((result) => result.output),
    text: step.text,
    finishReason: step.finishReason,
  }));
}

const out = {};

const text = await generateText({ model, system: "Be brief.", prompt: "hello there" });
out.generateText = {
  text: text.text,
  finishReason: text.finishReason,
  usage: text.usage,
  responseId: text.response.id,
};

const stream = streamText({ model, prompt: "one two three" });
let streamed = "";
for await (const delta of stream.textStream) {
  streamed += delta;
}
out.streamText = {
  text: streamed,
  finishReason: await stream.finishReason,
  usage: await stream.usage,
};

const called = await generateText({ model, prompt: "weather in Paris?", ...toolSteps });
out.tools = { text: called.text, steps: steps(called) };

const streamedCall = streamText({ model, prompt: "weather in Rome?", ...toolSteps });
await streamedCall.consumeStream();
out.streamTools = { text: await streamedCall.text, steps: steps({ steps: await streamedCall.steps }) };

const city = await generateObject({
  model,
  schema: z.object({ name: z.string(), population: z.number().int() }),
  prompt: "a city, please",
});
out.generateObject = { object: city.object, finishReason: city.finishReason };

console.log(JSON.stringify(out));
