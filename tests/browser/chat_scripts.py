"""The chats of the browser tests: prompts a user would write and what the fake model behind n8n answers to
each (tests/e2e/fake_models.py's `Script`: the prompt carries no test marker, the behaviour is here). These are
the chats the README's screenshots show; the tests assert the text as the page shows it.

The answers are plain paragraphs (no markdown syntax), so the page's text is the answer's words.
"""

from __future__ import annotations

from fake_models import Script, words

# -- Ollama Agent (n8n/ollama-streaming.json): streams ------------------------------------------------------

WELCOME = "Write a short welcome message for Priya, who joins our support team on Monday."
WELCOME_ANSWER = (
    "Welcome to the team, Priya! We are really glad you are joining us on Monday.\n\n"
    "Your first week is all about settling in: you will shadow a few live chats, meet the people you will work "
    "with most, and get your accounts and tools set up. Nobody expects you to know everything yet, so please ask "
    "as many questions as you like.\n\n"
    "See you on Monday, and welcome aboard!"
)
WELCOME_DELAY = 0.12  # seconds between words: slow enough to be seen streaming
WELCOME_HELD_AT = len(words(WELCOME_ANSWER.split(" tools set up.")[0]))  # the model pauses mid-sentence there

REFUND = "Write a reply to Sam, who asks when his refund arrives. We approved it today."
REFUND_ANSWER = (
    "Hi Sam,\n\n"
    "Thanks for your patience! Good news: we approved your refund today. It usually reaches your account within "
    "5 to 7 business days, depending on your bank.\n\n"
    "If it has not arrived by then, just reply to this message and we will look into it right away.\n\n"
    "Best regards,\nThe Support Team"
)

LEAP_YEAR = "Is 2027 a leap year?"
LEAP_YEAR_THINKING = (
    "A year is a leap year when it is divisible by 4, except century years, which must also be divisible by "
    "400. 2027 divided by 4 is 506.75, so it is not divisible by 4. The next year divisible by 4 is 2028."
)
LEAP_YEAR_ANSWER = (
    "No, 2027 is not a leap year: it is not divisible by 4, so February 2027 has 28 days. The next leap year is 2028."
)

ONBOARDING = "Draft a week-by-week onboarding plan for a new support engineer."
ONBOARDING_ANSWER = (
    "Here is a four-week plan you can adapt.\n\n"
    "Week 1: settle in. Set up accounts, the help desk and the chat tools. Meet the team and the people in "
    "product and engineering they will ask for help. Read the ten most common ticket types and shadow live chats "
    "every afternoon.\n\n"
    "Week 2: answer with a safety net. Take simple tickets from the queue, with a buddy reviewing each reply "
    "before it goes out. Learn the escalation path and write down every question that comes up.\n\n"
    "Week 3: own a queue. Handle the first-line queue for half of each day, join the weekly bug triage and pair "
    "with an engineer on one customer issue from report to fix.\n\n"
    "Week 4: work on your own. Take a full share of the queue, run one customer call with the buddy listening, "
    "and agree on goals for the next three months in a review with the team lead."
)
ONBOARDING_DELAY = 0.2  # long enough to stop in the middle

# -- Remote Agent: the same workflow behind a proxy that cuts the connection ---------------------------------

BUG_REPORT = "Give me three tips for writing a clear bug report."
BUG_REPORT_ANSWER = (
    "Here are three tips for a clear bug report.\n\n"
    "Say what you did, step by step, so that someone else can make it happen again.\n\n"
    "Say what you expected and what happened instead, with the exact error message.\n\n"
    "Add what matters about the setup: the version, the browser or device, and a screenshot if it helps."
)
CUT_AFTER = 8  # the proxy passes this many of n8n's streamed items (words), then cuts the connection

# -- Agent with Tools (n8n/agent-tools-sources.json): a Calculator tool, sources under the answer -------------

REVENUE = "We sold 1,284 licences at €49 each last quarter. What was the revenue?"
REVENUE_TOOL_INPUT = "1284 * 49"
REVENUE_RESULT = "62916"  # what n8n's Calculator node makes of REVENUE_TOOL_INPUT
REVENUE_ANSWER = "Revenue last quarter was €62,916: 1,284 licences at €49 each."

AGENT_MATHS = "How does the n8n AI Agent do arithmetic?"
AGENT_MATHS_ANSWER = (  # [1] and [2] cite the workflow's sources: Open WebUI shows them as chips in the text
    "It does not work it out in the model. The AI Agent node offers the tools connected to it to the model [1], "
    "and when a question needs a calculation the model asks for the Calculator tool with an expression such as "
    "1284 * 49. n8n runs the Calculator node, passes the exact result back to the model, and the model writes "
    "the answer around it [2].\n\n"
    "To set it up, connect a Calculator node to the agent's Tool input. Nothing else is needed: the agent "
    "describes the tool to the model on every turn."
)

# -- Pricing Agent (tests/e2e/n8n_harness.py's "ollama-calculator": n8n/ollama-streaming.json with a Calculator
# tool): streams, n8n's default settings; the tool's step and the turn's usage are read from its execution ----

PRICING = "A customer wants 38 hours of consulting at €65 an hour. What do we quote?"
PRICING_TOOL_INPUT = "38 * 65"
PRICING_RESULT = "2470"  # what n8n's Calculator node makes of PRICING_TOOL_INPUT
PRICING_ANSWER = (
    "Quote €2,470: 38 hours of consulting at €65 an hour.\n\n"
    "That is before VAT: add it if the customer is billed in the EU."
)

# -- Support Agent: a misspelt webhook URL --------------------------------------------------------------------

TICKETS = "Summarise yesterday's support tickets, please."

# -- Sales Chart (n8n/chart-binary.json): answers with a PNG, no model -----------------------------------------

SALES_CHART_PROMPT = "Show me this quarter's sales as a chart."

# -- a workflow tagged in n8n, picked by its n8n name (n8n/claude-streaming.json): streams ----------------------

SHIFT_HANDOVER = "Write a short handover note for the evening shift."
SHIFT_HANDOVER_ANSWER = (
    "Evening shift, here is where things stand.\n\n"
    "Two chats are waiting on customers to reply; both are tagged follow-up. The billing outage from this "
    "morning is fixed, and the status page says so.\n\n"
    "Nothing else is open. Have a quiet evening!"
)

STREAMING_GATE = "welcome"
RECOVERY_GATE = "bug-report"

SCRIPTS = {
    WELCOME: Script(WELCOME_ANSWER, delay=WELCOME_DELAY, hold=STREAMING_GATE, hold_at=WELCOME_HELD_AT),
    REFUND: Script(REFUND_ANSWER, delay=0.04),
    LEAP_YEAR: Script(LEAP_YEAR_ANSWER, thinking=LEAP_YEAR_THINKING, delay=0.07),  # "Thought for 3 seconds"
    ONBOARDING: Script(ONBOARDING_ANSWER, delay=ONBOARDING_DELAY),
    BUG_REPORT: Script(BUG_REPORT_ANSWER, delay=0.06, hold=RECOVERY_GATE),
    # the agent-tools workflow answers when its last node ends: nothing to see streaming, so no pause
    REVENUE: Script(REVENUE_ANSWER, delay=0, tool_input=REVENUE_TOOL_INPUT),
    AGENT_MATHS: Script(AGENT_MATHS_ANSWER, delay=0),
    PRICING: Script(PRICING_ANSWER, delay=0.07, tool_input=PRICING_TOOL_INPUT),
    SHIFT_HANDOVER: Script(SHIFT_HANDOVER_ANSWER, delay=0.05),
}
