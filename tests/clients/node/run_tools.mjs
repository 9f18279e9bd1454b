// openai-node's runTools loop against the gateway: the model calls a JavaScript function,
// the runner sends its result back, and the loop ends with the model's answer.
// Usage: node run_tools.mjs BASE_URL API_KEY MODEL   (trust the gateway: NODE_EXTRA_CA_CERTS)
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const calls = [];

function getWeather({ city }) {
  calls.push(city);
  return { city, forecast: "18 degrees and sunny" };
}

const runner = client.chat.completions.runTools(
  {
    model,
    temperature: 0,
    max_tokens: 64,
    messages: [{ role: "user", content: "What's the weather in Paris?" }],
    tools: [
      {
        type: "function",
        function: {
          name: "get_weather",
          function: getWeather,
          parse: JSON.parse,
          description: "Get the current weather in a city",
          parameters: {
            type: "object",
            properties: { city: { type: "string" } },
            required: ["city"],
          },
        },
      },
    ],
  },
  { maxChatCompletions: 6 },
);
const content = await runner.finalContent();
console.log(JSON.stringify({ calls, content, messages: runner.messages.length }));
