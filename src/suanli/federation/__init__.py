"""What runs inside a federated or DP job at a site: the client and aggregator loops and DP
releases. Like the agent, it reaches the front desk only over HTTP, with the job's credentials."""
