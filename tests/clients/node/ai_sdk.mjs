// The Vercel AI SDK's default OpenAI provider against the gateway: `openai(model)` (which
// speaks the Responses API, POST /v1/responses) with generateText, streamText, and a tool loop
// in which the SDK runs a JavaScript function and sends its result back.
// Usage: node ai_sdk.mjs BASE_URL API_KEY MODEL   (trust the gateway: NODE_EXTRA_CA_CERTS)
// Prints one JSON line; every path the SDK requested is in "paths".
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, model] = process.argv.slice(2);
const paths = [];
const recordingFetch = (input, init) => {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  if (url.hostname !== "127.0.0.1") throw new Error(`request outside loopback: ${url}`);
  paths.push(url.pathname);
  return fetch(input, init);
};
const openai = createOpenAI({ baseURL, apiKey, fetch: recordingFetch });

const generated = await generateText({
  model: openai(model),
  prompt: "Say hello to the world.",
  maxOutputTokens: 16,
  temperature: 0,
  maxRetries: 0,
});

const streamed = streamText({
  model: openai(model),
  prompt: "Count from one to five.",
  maxOutputTokens: 20,
  temperature: 0,
  maxRetries: 0,
  onError: ({ error }) => {
    throw error;
  },
});
let joined = "";
let deltas = 0;
for await (const part of streamed.fullStream) {
  if (part.type === "error") throw part.error;
  if (part.type === "text-delta") {
    joined += part.text;
    deltas += 1;
  }
}

const calls = [];
const looped = await generateText({
  model: openai(model),
  prompt: "What's the weather in Paris?",
  maxOutputTokens: 64,
  temperature: 0,
  maxRetries: 0,
  tools: {
    get_weather: tool({
      description: "Get the current weather in a city",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => {
        calls.push(city);
        return { city, forecast: "18 degrees and sunny" };
      },
    }),
  },
  // Force the call first, then only an answer: the loop's shape does not rest on a tiny
  // model's choice.
  prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
  stopWhen: stepCountIs(3),
});

console.log(
  JSON.stringify({
    paths: [...new Set(paths)],
    generate: {
      text: generated.text,
      finishReason: generated.finishReason,
      usage: generated.usage,
    },
    stream: {
      text: await streamed.text,
      joined,
      deltas,
      finishReason: await streamed.finishReason,
    },
    tools: { calls, text: looped.text, steps: looped.steps.length },
  }),
);
